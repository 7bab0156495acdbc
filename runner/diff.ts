/**
 * A job's diff.patch (DESIGN.md "Sites and the review loop"): the unified diff of the site as the
 * agent found it and as it left it, written by the runner (the trusted side) from the two trees
 * on disk, never from the agent's word. The output is what `git diff --no-index` prints
 * (core.quotePath off): `diff --git` headers, `new file mode` / `deleted file mode` / `old mode`
 * / `new mode`, `index` lines with git's blob ids (so `git apply` takes the patch: it is checked
 * that way in test/unit/diff.test.ts), `---`/`+++`, hunks with three lines of context and
 * `\ No newline at end of file`; symbolic links as git shows them (mode 120000, the target as
 * the content). preview/diff-render.ts renders it.
 *
 * Text or binary as git decides it: a NUL byte in the first 8000 bytes, or (git's own test is
 * NUL only) content that is not valid UTF-8, which the review page could not show as text
 * anyway. A binary file is `Binary files a/x and b/x differ` followed by a `# binary:` line with
 * each side's size and sha256 (git apply skips it; the bytes themselves are in the output
 * artifact). So is a file over MAX_TEXT_BYTES on either side: it is never read whole.
 *
 * The patch is cut at `maxBytes` (PAGEWRIGHT_MAX_DIFF_BYTES, 4 MiB by default), at a line end,
 * and then ends with a `# diff.patch cut ...` line that says so; the summary says `truncated`.
 * The counts cover every file compared, cut or not: only the bytes written stop.
 *
 * Memory: one file of each side at a time, plus a read-ahead window bounded by READ_AHEAD_BYTES,
 * and the sorted list of paths. Line diffs are jsdiff's Myers (`diff`, as the preview parses
 * with), bounded by an edit budget (EDIT_WORK): a file that would cost more is written as all
 * its old lines removed and all its new lines added, a correct patch that is not the shortest.
 */
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import { structuredPatch } from 'diff';
import pLimit from 'p-limit';
import type { DiffSummary } from '../common/schemas.js';

/** The default of PAGEWRIGHT_MAX_DIFF_BYTES: half of what the review page renders (preview/app.ts). */
export const DEFAULT_MAX_DIFF_BYTES = 4 * 1024 * 1024;
/** A file larger than this, on either side, is listed like a binary one (git's bigFileThreshold, much smaller). */
const MAX_TEXT_BYTES = 16 * 1024 * 1024;
/** How far ahead of the writer files are read (the first pending one is read whatever its size). */
const READ_AHEAD_BYTES = 16 * 1024 * 1024;
const READ_AHEAD_FILES = 32;
/** jsdiff's cost grows with (lines of both sides) x (edit length): the edit length allowed is this over the lines. */
const EDIT_WORK = 50_000_000;
/** Kept free at the end of a cut patch for the line that says so. */
const NOTE_ROOM = 512;
/** Git looks this far for a NUL byte. */
const BINARY_PROBE = 8000;

export interface SiteDiffOptions {
  /** The most bytes diff.patch may have, the note that it was cut included (at least 1024). */
  maxBytes: number;
  /** Relative POSIX paths to leave out, with everything below them (as in tree.ts). */
  exclude?: (relPath: string) => boolean;
  /**
   * Compare only these paths (files or links, relative, POSIX); default: every file and link of
   * both trees. The runner passes the paths its snapshots found changed, so the base side need
   * only hold those.
   */
  paths?: Iterable<string>;
  /** The permission bits to show for a path of the base or the output tree; default (or undefined): lstat's. */
  baseMode?: (path: string) => number | undefined;
  outputMode?: (path: string) => number | undefined;
}

type GitMode = '100644' | '100755' | '120000';

interface Side {
  mode: GitMode;
  size: number;
  /** The content (a link: its target); null when the file is too large to read whole. */
  data: Buffer | null;
  full: string;
}

interface Pair {
  path: string;
  base: Side | null;
  output: Side | null;
}

/**
 * Writes the diff of `baseDir` -> `outputDir` to `destFile` and returns its counts. Throws on an
 * I/O error (the caller decides what a missing diff means for the job).
 */
export async function writeSiteDiff(baseDir: string, outputDir: string, destFile: string, opts: SiteDiffOptions): Promise<DiffSummary> {
  if (!(opts.maxBytes >= 1024)) throw new RangeError(`maxBytes must be at least 1024, not ${opts.maxBytes}`);
  const paths = opts.paths
    ? [...new Set(opts.paths)].filter((p) => !excluded(p, opts.exclude)).sort(byPath)
    : union(await listTree(baseDir, opts.exclude), await listTree(outputDir, opts.exclude));
  const summary: DiffSummary = { filesAdded: 0, filesModified: 0, filesDeleted: 0, linesAdded: 0, linesRemoved: 0, truncated: false };
  const out = new CappedWriter(destFile, opts.maxBytes - NOTE_ROOM);
  let shown = 0;
  let changed = 0;
  try {
    for await (const pair of readPairs(paths, baseDir, outputDir, opts)) {
      const text = await diffPair(pair, summary);
      if (text === null) continue;
      changed++;
      if (out.write(text)) shown++;
      await out.drained();
    }
    summary.truncated = out.cut;
    if (out.cut)
      out.note(
        `# diff.patch cut at ${opts.maxBytes} bytes (PAGEWRIGHT_MAX_DIFF_BYTES): ${shown} of ${changed} changed files shown in full; the job's diffSummary counts them all\n`,
      );
  } finally {
    await out.close();
  }
  return summary;
}

/** The diff of one path, counted into `summary`; null when both sides are the same. */
async function diffPair(pair: Pair, summary: DiffSummary): Promise<string | null> {
  const { path, base, output } = pair;
  if (!base && !output) return null;
  if (base && output) {
    const same = await sameContent(base, output);
    if (base.mode === output.mode && same) return null;
    summary.filesModified++;
    // a file that became a link, or a link a file: git shows a deletion and a creation
    if ((base.mode === '120000') !== (output.mode === '120000'))
      return (await section(path, base, null, false, summary)) + (await section(path, null, output, false, summary));
    return section(path, base, output, same, summary);
  }
  if (base) summary.filesDeleted++;
  else summary.filesAdded++;
  return section(path, base, output, false, summary);
}

/** One file's part of the patch; `sameBytes`: only the mode changed. */
async function section(path: string, base: Side | null, output: Side | null, sameBytes: boolean, summary: DiffSummary): Promise<string> {
  const a = quoted(`a/${path}`);
  const b = quoted(`b/${path}`);
  let head = `diff --git ${a} ${b}\n`;
  if (!base) head += `new file mode ${output!.mode}\n`;
  else if (!output) head += `deleted file mode ${base.mode}\n`;
  else if (base.mode !== output.mode) head += `old mode ${base.mode}\nnew mode ${output.mode}\n`;
  if (sameBytes) return head;
  const [oldId, newId] = await Promise.all([blobId(base), blobId(output)]);
  head += `index ${oldId}..${newId}${base && output && base.mode === output.mode ? ` ${base.mode}` : ''}\n`;
  const oldName = base ? a : '/dev/null';
  const newName = output ? b : '/dev/null';
  if ((base && !isText(base)) || (output && !isText(output))) {
    const [oldSum, newSum] = await Promise.all([describe(base), describe(output)]);
    return `${head}Binary files ${oldName} and ${newName} differ\n# binary: ${oldName} ${oldSum}, ${newName} ${newSum}\n`;
  }
  const hunks = textHunks(base?.data?.toString('utf8') ?? '', output?.data?.toString('utf8') ?? '');
  if (hunks.length === 0) return head; // an empty file created or deleted
  // git ends a name with a space by a tab on these two lines, so that patch can tell where it ends
  const tab = path.includes(' ') ? '\t' : '';
  let body = `--- ${oldName}${base ? tab : ''}\n+++ ${newName}${output ? tab : ''}\n`;
  for (const h of hunks) {
    body += `@@ -${range(h.oldStart, h.oldLines)} +${range(h.newStart, h.newLines)} @@\n`;
    for (const line of h.lines) {
      if (line[0] === '+') summary.linesAdded++;
      else if (line[0] === '-') summary.linesRemoved++;
      body += `${line}\n`;
    }
  }
  return head + body;
}

interface Hunk {
  oldStart: number;
  oldLines: number;
  newStart: number;
  newLines: number;
  lines: string[];
}

const NO_NEWLINE = '\\ No newline at end of file';

function textHunks(oldText: string, newText: string): Hunk[] {
  const lines = countLines(oldText) + countLines(newText);
  const maxEditLength = Math.max(64, Math.floor(EDIT_WORK / Math.max(1, lines)));
  const patch = structuredPatch('a', 'b', oldText, newText, undefined, undefined, { context: 3, maxEditLength });
  return patch ? patch.hunks : [wholeFile(oldText, newText)];
}

/** Every old line removed, every new one added: the patch when the edit is too costly to shorten. */
function wholeFile(oldText: string, newText: string): Hunk {
  const side = (text: string, sign: '-' | '+') => {
    if (text === '') return [];
    const parts = text.split('\n');
    const ended = parts.at(-1) === '';
    if (ended) parts.pop();
    const lines = parts.map((l) => sign + l);
    if (!ended) lines.push(NO_NEWLINE);
    return lines;
  };
  const removed = side(oldText, '-');
  const added = side(newText, '+');
  const count = (l: string[]) => l.filter((x) => x !== NO_NEWLINE).length;
  return { oldStart: 1, oldLines: count(removed), newStart: 1, newLines: count(added), lines: [...removed, ...added] };
}

function countLines(text: string): number {
  let n = 1;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** Git's hunk range: `start,count`, the count left out when 1, the start one lower for an empty side. */
function range(start: number, count: number): string {
  if (count === 0) return `${start - 1},0`;
  return count === 1 ? `${start}` : `${start},${count}`;
}

function isText(side: Side): boolean {
  if (side.mode === '120000') return true;
  if (side.data === null) return false;
  return !side.data.subarray(0, BINARY_PROBE).includes(0) && isUtf8(side.data);
}

async function sameContent(x: Side, y: Side): Promise<boolean> {
  if (x.size !== y.size) return false;
  if (x.data && y.data) return x.data.equals(y.data);
  const [hx, hy] = await Promise.all([streamHash(x, 'sha256'), streamHash(y, 'sha256')]);
  return hx === hy;
}

/** Git's blob id, abbreviated as git diff --no-index does (7 hex digits); zeros for no side. */
async function blobId(side: Side | null): Promise<string> {
  if (!side) return '0000000';
  const hash = createHash('sha1').update(`blob ${side.size}\0`);
  if (side.data) hash.update(side.data);
  else for await (const chunk of createReadStream(side.full, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex').slice(0, 7);
}

async function describe(side: Side | null): Promise<string> {
  if (!side) return 'absent';
  return `${side.size} bytes, sha256 ${await streamHash(side, 'sha256')}`;
}

async function streamHash(side: Side, algorithm: string): Promise<string> {
  const hash = createHash(algorithm);
  if (side.data) return hash.update(side.data).digest('hex');
  for await (const chunk of createReadStream(side.full, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Git's quoting of a path (core.quotePath off: UTF-8 stays as it is): in double quotes, with C
 * escapes, when it holds a double quote, a backslash or a control character.
 */
function quoted(name: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is looked for
  if (!/["\\\u0000-\u001f\u007f]/.test(name)) return name;
  const escapes: Record<string, string> = {
    '"': '\\"',
    '\\': '\\\\',
    '\t': '\\t',
    '\n': '\\n',
    '\r': '\\r',
    '\b': '\\b',
    '\f': '\\f',
    '\v': '\\v',
    '\u0007': '\\a',
  };
  let out = '"';
  for (const ch of name) {
    const code = ch.charCodeAt(0);
    out += escapes[ch] ?? (code < 0x20 || code === 0x7f ? `\\${code.toString(8).padStart(3, '0')}` : ch);
  }
  return `${out}"`;
}

const byPath = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function excluded(path: string, exclude: ((relPath: string) => boolean) | undefined): boolean {
  if (!exclude) return false;
  const parts = path.split('/');
  for (let i = 1; i <= parts.length; i++) if (exclude(parts.slice(0, i).join('/'))) return true;
  return false;
}

/** The files and links of a tree, as relative paths (directories are walked, not listed). */
async function listTree(root: string, exclude: ((relPath: string) => boolean) | undefined): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string, rel: string): Promise<void> {
    const entries = await readdir(dir, { withFileTypes: true });
    await Promise.all(
      entries.map(async (e) => {
        const path = rel ? `${rel}/${e.name}` : e.name;
        if (exclude?.(path)) return;
        if (e.isDirectory()) await walk(join(dir, e.name), path);
        else if (e.isFile() || e.isSymbolicLink()) out.push(path);
      }),
    );
  }
  await walk(root, '');
  return out;
}

function union(a: string[], b: string[]): string[] {
  return [...new Set([...a, ...b])].sort(byPath);
}

/** The two sides of each path, in order, read ahead of the writer within READ_AHEAD_BYTES. */
async function* readPairs(paths: string[], baseDir: string, outputDir: string, opts: SiteDiffOptions): AsyncGenerator<Pair> {
  // lstat goes to libuv's threadpool: keep it busy (the trees hold still: the agent is stopped)
  const limit = pLimit(16);
  const stats = await Promise.all(
    paths.map((path) => limit(() => Promise.all([statOf(join(baseDir, path)), statOf(join(outputDir, path))]))),
  );
  const pending: Array<{ pair: Promise<Pair>; bytes: number }> = [];
  let pendingBytes = 0;
  let next = 0;
  while (next < paths.length || pending.length > 0) {
    // start reads until the window is full (the first one whatever its size)
    while (next < paths.length && pending.length < READ_AHEAD_FILES) {
      const [bs, os] = stats[next]!;
      const bytes = readBytes(bs) + readBytes(os);
      if (pending.length > 0 && pendingBytes + bytes > READ_AHEAD_BYTES) break;
      const pair = load(paths[next]!, bs, os, baseDir, outputDir, opts);
      // read ahead: its failure is seen when its turn comes
      pair.catch(() => {});
      pending.push({ pair, bytes });
      pendingBytes += bytes;
      next++;
    }
    const first = pending.shift()!;
    pendingBytes -= first.bytes;
    yield await first.pair;
  }
}

async function statOf(full: string): Promise<Stats | null> {
  return lstat(full).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
    throw err;
  });
}

const readBytes = (st: Stats | null) => (st?.isFile() && st.size <= MAX_TEXT_BYTES ? st.size : 0);

async function load(
  path: string,
  bs: Stats | null,
  os: Stats | null,
  baseDir: string,
  outputDir: string,
  opts: SiteDiffOptions,
): Promise<Pair> {
  const [base, output] = await Promise.all([
    sideOf(join(baseDir, path), bs, opts.baseMode?.(path)),
    sideOf(join(outputDir, path), os, opts.outputMode?.(path)),
  ]);
  return { path, base, output };
}

async function sideOf(full: string, st: Stats | null, mode: number | undefined): Promise<Side | null> {
  if (!st) return null;
  if (st.isSymbolicLink()) {
    const target = Buffer.from(await readlink(full), 'utf8');
    return { mode: '120000', size: target.length, data: target, full };
  }
  if (!st.isFile()) return null; // a directory (its files are paths of their own), or never part of a site
  const gitMode: GitMode = ((mode ?? st.mode) & 0o100) !== 0 ? '100755' : '100644';
  const data = st.size <= MAX_TEXT_BYTES ? await readFile(full) : null;
  return { mode: gitMode, size: data ? data.length : st.size, data, full };
}

/**
 * diff.patch as it is written: buffered, with backpressure, and cut at `limit` bytes at a line
 * end; after the cut nothing more is written but the note.
 */
class CappedWriter {
  readonly #out;
  readonly #limit: number;
  #written = 0;
  #cut = false;
  #error: Error | null = null;

  constructor(path: string, limit: number) {
    this.#out = createWriteStream(path, { highWaterMark: 1 << 20 });
    this.#out.on('error', (err) => {
      this.#error ??= err;
    });
    this.#limit = limit;
  }

  get cut(): boolean {
    return this.#cut;
  }

  /** Writes `text`, or as much of it as fits; true when all of it was written. */
  write(text: string): boolean {
    if (this.#cut) return false;
    let buf = Buffer.from(text, 'utf8');
    if (this.#written + buf.length > this.#limit) {
      const room = this.#limit - this.#written;
      const end = buf.subarray(0, room).lastIndexOf(0x0a);
      buf = buf.subarray(0, end + 1);
      this.#cut = true;
    }
    if (buf.length > 0) {
      this.#out.write(buf);
      this.#written += buf.length;
    }
    return !this.#cut;
  }

  note(text: string): void {
    this.#out.write(text);
  }

  async drained(): Promise<void> {
    if (this.#error) throw this.#error;
    if (this.#out.writableNeedDrain) await Promise.race([once(this.#out, 'drain'), finished(this.#out)]);
    if (this.#error) throw this.#error;
  }

  async close(): Promise<void> {
    this.#out.end();
    await finished(this.#out);
  }
}
