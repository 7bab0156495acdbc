/**
 * Site archives: safe extraction of an untrusted tar.gz, and packing of the edited site.
 *
 * Extraction refuses, before writing it, any entry that could reach outside the destination or
 * exhaust the disk: absolute paths, `..` segments, symlinks that are absolute or climb (`..`),
 * hard links that leave the tree, devices and FIFOs, too many entries, too many bytes. Symlinks
 * may only point down from their own directory; that keeps every chain of links inside the
 * tree, so a later entry written "through" a link still lands inside. The first violation
 * aborts the whole extraction and the caller discards the directory.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { isAbsolute, posix } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry, Unpack, create } from 'tar';
import { PagewrightError } from '../common/errors.js';
import { snapshotTree } from './tree.js';

export interface UnpackLimits {
  maxEntries: number;
  maxBytes: number;
}

export interface UnpackStats {
  entries: number;
  bytes: number;
}

const ALLOWED_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link']);

/** Checks one entry; returns the reason it is unsafe, or null. Pure, for unit tests. */
export function entryViolation(entry: { path: string; type: string; linkpath?: string | undefined }): string | null {
  const path = entry.path;
  if (path.includes('\0')) return 'path contains a NUL byte';
  if (isAbsolute(path) || /^[a-zA-Z]:[\\/]/.test(path)) return 'absolute path';
  const segments = path.split(/[\\/]+/);
  if (segments.includes('..')) return 'path climbs out with ".."';
  if (!ALLOWED_TYPES.has(entry.type)) return `entry type ${entry.type} is not allowed (only files, directories and links)`;
  if (entry.type === 'SymbolicLink') {
    const target = entry.linkpath ?? '';
    if (target === '') return 'symlink without a target';
    if (isAbsolute(target)) return `symlink to absolute path ${target}`;
    if (target.split(/[\\/]+/).includes('..')) return `symlink target ${target} climbs with ".."`;
  }
  if (entry.type === 'Link') {
    const target = entry.linkpath ?? '';
    if (target === '' || isAbsolute(target)) return `hard link to ${target || 'nothing'} outside the archive`;
    if (target.split(/[\\/]+/).includes('..')) return `hard link target ${target} climbs with ".."`;
    if (posix.normalize(target) === '.') return 'hard link to the archive root';
  }
  return null;
}

export class UnsafeArchiveError extends PagewrightError {
  constructor(message: string) {
    super('UnsafeArchive', message);
    this.name = 'UnsafeArchiveError';
  }
}

/**
 * Reads the whole archive without writing anything and throws at the first unsafe entry or
 * exceeded limit. Run before extraction, so a rejected archive leaves no trace on disk.
 */
export async function inspectArchive(archivePath: string, limits: UnpackLimits): Promise<UnpackStats> {
  const stats: UnpackStats = { entries: 0, bytes: 0 };
  let violation: PagewrightError | null = null;
  const parser: Parser = new Parser({
    strict: true,
    onReadEntry: (entry) => {
      if (!violation) violation = checkEntry(entry, stats, limits);
      if (violation) parser.abort(violation);
      else entry.resume(); // discard the data: this pass only reads headers
    },
  });
  try {
    await feed(archivePath, parser);
  } catch (err) {
    if (violation) throw violation;
    throw new PagewrightError('ArtifactCorrupt', `site artifact is not a valid tar.gz: ${(err as Error).message}`, { cause: err });
  }
  if (violation) throw violation;
  return stats;
}

function checkEntry(entry: ReadEntry, stats: UnpackStats, limits: UnpackLimits): PagewrightError | null {
  stats.entries++;
  if (entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'ContiguousFile') stats.bytes += entry.size;
  const why = entryViolation({ path: entry.path, type: entry.type, linkpath: entry.linkpath });
  if (why) return new UnsafeArchiveError(`unsafe archive entry ${JSON.stringify(entry.path.slice(0, 200))}: ${why}`);
  if (stats.entries > limits.maxEntries) return new UnsafeArchiveError(`archive has more than ${limits.maxEntries} entries`);
  if (stats.bytes > limits.maxBytes) return new PagewrightError('ArtifactTooLarge', `archive unpacks to more than ${limits.maxBytes} bytes`);
  return null;
}

/**
 * Extracts `archivePath` (tar or tar.gz) into the empty directory `dest`, after inspectArchive
 * accepted it. The same checks run again during extraction as a second line of defence.
 */
export async function unpackArchive(archivePath: string, dest: string, limits: UnpackLimits): Promise<UnpackStats> {
  await inspectArchive(archivePath, limits);
  await mkdir(dest, { recursive: true });
  if ((await readdir(dest)).length > 0) throw new Error(`unpack destination ${dest} is not empty`);
  const stats: UnpackStats = { entries: 0, bytes: 0 };
  let violation: PagewrightError | null = null;
  const unpack: Unpack = new Unpack({
    cwd: dest,
    strict: true,
    preservePaths: false,
    preserveOwner: false,
    unlink: true,
    filter: (_path, entry) => {
      const e = entry as ReadEntry;
      violation ??= checkEntry(e, stats, limits);
      if (violation) {
        unpack.abort(violation);
        return false;
      }
      // no setuid/setgid/sticky bits from an untrusted archive
      if (e.mode !== undefined) e.mode &= 0o777;
      return true;
    },
  });
  try {
    await feed(archivePath, unpack);
  } catch (err) {
    if (violation) throw violation;
    throw new PagewrightError('ArtifactCorrupt', `site artifact could not be extracted: ${(err as Error).message}`, { cause: err });
  }
  return stats;
}

/**
 * Streams a file into a tar Parser/Unpack. They are event emitters with write/end rather than
 * Node streams, so stream.pipeline cannot tell when they are done; 'end' (after every pending
 * write, for Unpack) or 'error' can.
 */
function feed(file: string, sink: Parser): Promise<void> {
  return new Promise((resolve, reject) => {
    const input = createReadStream(file, { highWaterMark: 1 << 20 });
    const fail = (err: unknown) => {
      input.destroy();
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    input.once('error', fail);
    sink.once('error', fail);
    sink.once('end', () => resolve());
    input.pipe(sink as unknown as NodeJS.WritableStream);
  });
}

export interface PackResult {
  sha256: string;
  size: number;
}

/** Packs `entries` (paths relative to `cwd`, in this order) into a tar.gz file, hashing it as it goes. */
export async function packArchive(cwd: string, entries: string[], outPath: string): Promise<PackResult> {
  const hasher = new Sha256Counter();
  // portable: no uid/gid/user names, so the archive does not depend on who ran the job
  const tarStream = create({ cwd, gzip: { level: 6 }, portable: true, noDirRecurse: true, follow: false }, entries);
  await pipeline(tarStream, hasher, createWriteStream(outPath, { flush: true }));
  return { sha256: hasher.digest(), size: hasher.bytes };
}

/** Packs a whole directory (sorted, links kept as links). */
export async function packDirectory(dir: string, outPath: string): Promise<PackResult> {
  return packArchive(dir, [...(await snapshotTree(dir)).keys()], outPath);
}

/** sha256 and byte count of a stream passing through. */
export class Sha256Counter extends Transform {
  readonly #hash = createHash('sha256');
  bytes = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.#hash.update(chunk);
    done(null, chunk);
  }

  digest(): string {
    return this.#hash.digest('hex');
  }
}
