/**
 * Every benchmark but those on the real node, in smoke mode (test/support/bench-smoke.ts), as
 * `make bench-*` runs them: a process each. Nothing runs the full benchmarks routinely, so
 * without this a bench breaks unseen (bench-admission did when the manager started to require
 * the gateway's settings). The one on the real node: test/node/bench-e2e-smoke.test.ts.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { BENCHES, BENCH_DIR, ON_THE_NODE, smokeRun } from '../support/bench-smoke.js';
import { REPO_ROOT } from '../support/sites.js';

describe('benchmarks in smoke mode (BENCH_SMOKE=1)', function () {
  this.timeout(240_000);
  this.slow(30_000);

  it('covers every bench/*.ts and every one `make bench` runs', async () => {
    const scripts = (await readdir(BENCH_DIR)).filter((f) => f.endsWith('.ts') && f !== 'lib.ts').map((f) => f.replace(/\.ts$/, ''));
    expect([...BENCHES].sort()).to.deep.equal(scripts.sort());
    const makefile = await readFile(join(REPO_ROOT, 'mk/bench.mk'), 'utf8');
    const inBench = /^bench:.*\n((?:\t.*\n)+)/m.exec(makefile)?.[1] ?? '';
    expect([...inBench.matchAll(/bench\/([\w-]+)\.ts/g)].map((m) => m[1])).to.deep.equal(BENCHES);
  });

  for (const name of BENCHES.filter((b) => !ON_THE_NODE.includes(b))) {
    it(`bench/${name}.ts starts, passes its own checks, prints its HEADLINE and records nothing`, () => smokeRun(name));
  }
});
