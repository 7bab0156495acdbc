/**
 * diff.patch (runner/diff.ts) against `git diff --no-index` on the same two trees, in the same
 * run: a generated site of BENCH_DIFF_MIB MiB (default 50; HTML-like text files of 4-24 KiB and
 * a tenth of the bytes in binary files), of which BENCH_DIFF_EDIT_PCT percent (default 5) of the
 * text files are edited (a line changed, one inserted, one removed), 1% deleted, 1% added, and a
 * tenth of the binaries rewritten. Goal: ours takes at most 1.2x git's time.
 *
 * Both write the whole patch (ours with no byte limit, as git has none) to a file on the same
 * disk, with the trees in the page cache (a warm-up run of each first), alternating which goes
 * first. git runs with --no-renames (ours finds no renames either) and core.quotePath off (as
 * ours prints). Also timed, not compared: ours with the default 4 MiB limit, and the runner's
 * own case, where the snapshots already named the changed paths (SiteDiffOptions.paths) and
 * the base side holds only those. Checks: our line counts equal git's --numstat.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_MAX_DIFF_BYTES, writeSiteDiff } from '../runner/diff.js';
import { RUNS, alternating, headline, machine, printTable, record, sized, summarize, timed } from './lib.js';

const MIB = sized('BENCH_DIFF_MIB', 50, 2);
const EDIT_PCT = sized('BENCH_DIFF_EDIT_PCT', 5, 5);
const GOAL = 1.2;

/** A deterministic pseudo-random sequence, so every run diffs the same trees. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function page(rand: () => number, i: number, bytes: number): string[] {
  const lines = [`<!doctype html>`, `<html lang="en"><head><meta charset="utf-8"><title>Page ${i}</title></head>`, '<body>'];
  let size = 0;
  for (let n = 0; size < bytes; n++) {
    const words = Array.from({ length: 4 + Math.floor(rand() * 12) }, () => Math.floor(rand() * 1e6).toString(36)).join(' ');
    const line = `  <p id="p${i}-${n}">${words}</p>`;
    lines.push(line);
    size += line.length + 1;
  }
  lines.push('</body>', '</html>');
  return lines;
}

async function put(root: string, path: string, content: string | Buffer): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), content);
}

/** The base tree and the edited one; returns the paths that differ (for the runner's case). */
async function generate(base: string, output: string): Promise<{ files: number; bytes: number; changed: string[] }> {
  const rand = prng(42);
  const textBytes = MIB * 1024 * 1024 * 0.9;
  const texts: Array<{ path: string; lines: string[] }> = [];
  let bytes = 0;
  for (let i = 0; bytes < textBytes; i++) {
    const lines = page(rand, i, 4096 + Math.floor(rand() * 20480));
    const path = `section-${i % 40}/page-${i}.html`;
    texts.push({ path, lines });
    const text = `${lines.join('\n')}\n`;
    bytes += text.length;
    await put(base, path, text);
  }
  const binaries: string[] = [];
  for (let i = 0; bytes < MIB * 1024 * 1024; i++) {
    const path = `img/photo-${i}.jpg`;
    const data = randomBytes(64 * 1024 + Math.floor(rand() * 128 * 1024));
    binaries.push(path);
    bytes += data.length;
    await put(base, path, data);
  }
  await cp(base, output, { recursive: true });
  const changed: string[] = [];
  for (const [i, { path, lines }] of texts.entries()) {
    const r = rand() * 100;
    if (r < EDIT_PCT) {
      const edited = [...lines];
      const at = 3 + Math.floor(rand() * (edited.length - 6));
      edited[at] = `${edited[at]} <!-- edited -->`;
      edited.splice(at + 10 < edited.length - 2 ? at + 10 : at, 0, `  <p class="new">inserted in ${i}</p>`);
      edited.splice(Math.max(3, at - 20), 1);
      changed.push(path);
      await put(output, path, `${edited.join('\n')}\n`);
    } else if (r < EDIT_PCT + 1) {
      changed.push(path);
      await rm(join(output, path));
    }
  }
  const added = Math.ceil(texts.length / 100);
  for (let i = 0; i < added; i++) {
    const path = `new/page-${i}.html`;
    changed.push(path);
    await put(output, path, `${page(rand, 100_000 + i, 8192).join('\n')}\n`);
  }
  for (const [i, path] of binaries.entries()) {
    if (i % 10 !== 0) continue;
    changed.push(path);
    await put(output, path, randomBytes(64 * 1024));
  }
  return { files: texts.length + binaries.length, bytes, changed: changed.sort() };
}

async function gitDiff(base: string, output: string, dest: string, ...args: string[]): Promise<void> {
  const out = createWriteStream(dest);
  await once(out, 'open');
  const proc = spawn('git', ['-c', 'core.quotePath=false', 'diff', '--no-index', '--no-renames', '--no-color', ...args, base, output], {
    stdio: ['ignore', out, 'inherit'],
  });
  const [code] = (await once(proc, 'exit')) as [number];
  out.close();
  if (code !== 1 && code !== 0) throw new Error(`git diff exited ${code}`);
}

const scratch = await mkdtemp(join(tmpdir(), 'pw-bench-diff-'));
try {
  const base = join(scratch, 'base');
  const output = join(scratch, 'output');
  const site = await generate(base, output);
  console.log(`site: ${site.files} files, ${(site.bytes / 1024 / 1024).toFixed(1)} MiB; ${site.changed.length} paths changed`);

  // the runner's case: the base side holds only the changed paths
  const changedBase = join(scratch, 'changed-base');
  for (const path of site.changed) await cp(join(base, path), join(changedBase, path)).catch(() => {});

  const ours = join(scratch, 'ours.patch');
  const git = join(scratch, 'git.patch');
  const whole = { maxBytes: Number.MAX_SAFE_INTEGER };
  // warm-up (page cache, JIT), and the checks
  const summary = await writeSiteDiff(base, output, ours, whole);
  await gitDiff(base, output, git);
  const { stdout } = await promisify(execFile)('git', ['diff', '--no-index', '--no-renames', '--numstat', base, output], {
    maxBuffer: 1 << 28,
  }).catch((e: { stdout: string }) => e);
  let added = 0;
  let removed = 0;
  for (const line of stdout.trim().split('\n')) {
    const [a, r] = line.split('\t');
    if (a === '-') continue;
    added += Number(a);
    removed += Number(r);
  }
  if (summary.linesAdded !== added || summary.linesRemoved !== removed)
    throw new Error(`counts differ from git --numstat: ours +${summary.linesAdded} -${summary.linesRemoved}, git +${added} -${removed}`);
  const files = summary.filesAdded + summary.filesModified + summary.filesDeleted;
  if (files !== site.changed.length) throw new Error(`${files} files in our diff, ${site.changed.length} changed`);
  const [oursSize, gitSize] = [(await stat(ours)).size, (await stat(git)).size];
  console.log(`patch: ours ${oursSize} bytes, git ${gitSize} bytes; +${added} -${removed} lines, ${files} files`);

  const series = { ours: [] as number[], git: [] as number[], ratio: [] as number[], capped: [] as number[], runner: [] as number[] };
  for (let run = 0; run < RUNS; run++) {
    const [o, g] = await alternating(
      run,
      () => timed(() => writeSiteDiff(base, output, ours, whole)),
      () => timed(() => gitDiff(base, output, git)),
    );
    series.ours.push(o.ms);
    series.git.push(g.ms);
    series.ratio.push(o.ms / g.ms);
    series.capped.push((await timed(() => writeSiteDiff(base, output, ours, { maxBytes: DEFAULT_MAX_DIFF_BYTES }))).ms);
    series.runner.push((await timed(() => writeSiteDiff(changedBase, output, ours, { ...whole, paths: site.changed }))).ms);
  }
  printTable(`diff of a ${MIB} MiB site, ${EDIT_PCT}% of its pages edited`, [
    ['ours (runner/diff.ts), whole tree', series.ours, 'ms'],
    ['git diff --no-index --no-renames', series.git, 'ms'],
    ['ours / git', series.ratio, 'x'],
    [`ours, cut at ${DEFAULT_MAX_DIFF_BYTES} bytes`, series.capped, 'ms'],
    ["ours, the runner's case (changed paths only)", series.runner, 'ms'],
  ]);
  const ratio = summarize(series.ratio).median;
  headline(
    `diff of a ${MIB} MiB site (${site.files} files, ${site.changed.length} changed): ours ${summarize(series.ours).median.toFixed(0)} ms, git diff --no-index ${summarize(series.git).median.toFixed(0)} ms: ${ratio.toFixed(2)}x git (goal <= ${GOAL}x: ${ratio <= GOAL ? 'met' : 'missed'})`,
  );
  await record('diff', {
    mib: MIB,
    edit_pct: EDIT_PCT,
    files: site.files,
    changed: site.changed.length,
    patch_bytes: { ours: oursSize, git: gitSize },
    git_version: (await promisify(execFile)('git', ['--version'])).stdout.trim(),
    ms: Object.fromEntries(Object.entries(series).map(([k, v]) => [k, summarize(v)])),
    goal: GOAL,
    met: ratio <= GOAL,
    machine: machine(),
  });
} finally {
  await rm(scratch, { recursive: true, force: true });
}
