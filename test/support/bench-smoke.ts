/**
 * One benchmark in smoke mode (bench/lib.ts: BENCH_SMOKE=1): once, at its smallest meaningful
 * size, as `make bench-*` runs it (tsx, a process of its own), with all its own checks; it must
 * exit 0, print its HEADLINE (no NaN) and append nothing to bench/results. Used by
 * test/integration/bench-smoke.test.ts (in `make test`; `make bench-smoke` runs it alone).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { REPO_ROOT } from './sites.js';

export const BENCH_DIR = join(REPO_ROOT, 'bench');
/** Every bench, in the order `make bench` runs them. */
export const BENCHES = [
  'storage-throughput',
  'storage-s3',
  'runner-artifacts',
  'manager-admission',
  'admission-index',
  'gateway',
  'preview',
  'diff',
  'manager-memory',
  'site-git',
  'site-checks',
  'e2e',
];
/** Run on the suite's real node instead, in process (test/node/bench-e2e-smoke.test.ts). */
export const ON_THE_NODE = ['e2e'];

async function results(): Promise<Record<string, number>> {
  const dir = join(BENCH_DIR, 'results');
  const names = await readdir(dir).catch(() => [] as string[]);
  return Object.fromEntries(await Promise.all(names.map(async (n) => [n, (await stat(join(dir, n))).size] as const)));
}

export async function smokeRun(name: string): Promise<void> {
  const before = await results();
  const proc = spawn(process.execPath, ['--import', 'tsx', join(BENCH_DIR, `${name}.ts`)], {
    cwd: REPO_ROOT,
    env: { ...process.env, BENCH_SMOKE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const [code] = (await once(proc, 'exit')) as [number | null];
  expect(code, out.slice(-6000)).to.equal(0);
  expect(out).to.match(/^HEADLINE .+/m);
  expect(out.match(/^HEADLINE .*/m)?.[0]).not.to.match(/NaN/);
  expect(await results(), 'bench/results changed').to.deep.equal(before);
}
