/**
 * Shared bench helpers: repeated runs, medians with min/max, a printed table, RSS sampling of a
 * process from /proc, and results appended to bench/results/ for BENCHMARKS.md.
 *
 * Smoke mode (BENCH_SMOKE=1, `make bench-smoke`, part of `make test`): every bench runs once at
 * its smallest meaningful size (sized()), with all its own checks, and records nothing, so a
 * bench that no longer starts or whose checks fail breaks the suite instead of rotting unseen
 * (test/bench/smoke.test.ts).
 */
import { createCipheriv, createHash } from 'node:crypto';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
export const SMOKE = process.env.BENCH_SMOKE === '1';
export const RUNS = SMOKE ? 1 : Number(process.env.BENCH_RUNS ?? 5);

/** A size knob: the variable `name` when set, else `smoke` in smoke mode, else `full`. */
export function sized(name: string, full: number, smoke: number): number {
  const set = process.env[name];
  return set !== undefined && set !== '' ? Number(set) : SMOKE ? smoke : full;
}

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summarize(values: number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, n: sorted.length };
}

/** summarize() of every series in a record of them, under the same keys. */
export function summarizeAll(series: Record<string, number[]>): Record<string, Summary> {
  return Object.fromEntries(Object.entries(series).map(([k, v]) => [k, summarize(v)]));
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const fmt = (v: number, digits: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(digits));

/** Prints rows of name -> values (one per run) as median [min..max]. */
export function printTable(title: string, rows: Array<[string, number[], string]>, digits = 2): void {
  console.log(`\n${title} (${RUNS} runs unless noted: median [min .. max])`);
  const width = Math.max(...rows.map((r) => r[0].length));
  for (const [name, values, unit] of rows) {
    const s = summarize(values);
    console.log(
      `  ${name.padEnd(width)}  ${fmt(s.median, digits).padStart(9)} ${unit.padEnd(6)} [${fmt(s.min, digits)} .. ${fmt(s.max, digits)}]${s.n !== RUNS ? ` (n=${s.n})` : ''}`,
    );
  }
}

export function headline(text: string): void {
  console.log(`\nHEADLINE ${text}`);
}

export async function record(bench: string, data: Record<string, unknown>): Promise<void> {
  if (SMOKE) return void console.log(`\n(smoke run: nothing recorded for ${bench})`);
  const dir = join(BENCH_DIR, 'results');
  await mkdir(dir, { recursive: true });
  await appendFile(join(dir, `${bench}.jsonl`), `${JSON.stringify({ at: new Date().toISOString(), machine: machine(), ...data })}\n`);
}

export function machine(): Record<string, unknown> {
  return { cores: cpus().length, memory_gib: Math.round((totalmem() / 1024 ** 3) * 10) / 10, node: process.version };
}

/** VmRSS and VmHWM (peak) of a process, in MiB. */
export async function rss(pid: number): Promise<{ rssMiB: number; peakMiB: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024 };
}

/** Samples a process's RSS every `everyMs` until stopped; returns the samples in MiB. */
export function sampleRss(pid: number, everyMs = 50): { stop(): number[] } {
  const samples: number[] = [];
  const timer = setInterval(() => {
    rss(pid).then(
      (r) => samples.push(r.rssMiB),
      () => undefined,
    );
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return samples;
    },
  };
}

/**
 * Runs both measurements, the baseline first on even runs and second on odd ones, so that
 * neither side always gets the warmer caches; returns them in argument order.
 */
export async function alternating<A, B>(run: number, a: () => Promise<A>, b: () => Promise<B>): Promise<[A, B]> {
  if (run % 2 === 0) {
    const first = await a();
    return [first, await b()];
  }
  const second = await b();
  return [await a(), second];
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
}

/** A deterministic pseudo-random sequence (the same site every run). */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** `bytes` incompressible bytes, the same for the same seed (AES-CTR of zeros). */
export function noise(seed: string, bytes: number): Buffer {
  const key = createHash('sha256').update(seed).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(bytes));
}
