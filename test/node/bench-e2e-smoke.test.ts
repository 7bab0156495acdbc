/**
 * bench/e2e.ts in smoke mode (bench/lib.ts), on this suite's real node: its measurement
 * (bench/support/e2e-run.ts) with one job and one bare pod, all its own checks, nothing recorded.
 * In process, so it shares the node the other suites use instead of starting the machine's one
 * node itself (a minute more); the bench's own start-up is bench/e2e.ts's few lines around it.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { runE2e } from '../../bench/support/e2e-run.js';
import { BENCH_DIR } from '../support/bench-smoke.js';
import { type ManagerEnv, startManagerEnv } from '../support/manager-env.js';

describe('bench/e2e.ts in smoke mode (one job, one bare pod, on the real node)', function () {
  this.timeout(180_000);
  let env: ManagerEnv;
  before(async () => (env = await startManagerEnv('bench-e2e')));
  after(async () => env?.stop());

  it('runs its job and its bare pod, passes its own checks, prints its HEADLINE and records nothing', async () => {
    const results = async () => {
      const dir = join(BENCH_DIR, 'results');
      const names = await readdir(dir).catch(() => [] as string[]);
      return Promise.all(names.map(async (n) => `${n}:${(await stat(join(dir, n))).size}`));
    };
    const before = await results();
    const text = await runE2e(env, { jobs: 1, record: false });
    expect(text).to.match(/^CR -> runner container started p50 \d+ ms/);
    expect(text).not.to.match(/NaN/);
    expect(await results()).to.deep.equal(before);
  });
});
