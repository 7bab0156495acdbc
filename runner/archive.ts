/**
 * Site archives: safe extraction of an untrusted tar.gz, and packing of the edited site.
 *
 * Extraction applies the archive rules (common/archive-rules.ts: relative paths without `..`,
 * files, directories and links that point down only, no devices or FIFOs, entry and byte
 * limits) to every entry before writing anything, and again while writing as a second line of
 * defence; setuid/setgid/sticky bits are stripped. The first violation aborts the whole
 * extraction and the caller discards the directory. Each entry's permission bits are recorded,
 * so the output can carry them whatever the modes on disk became (runner/file-modes.ts).
 *
 * Packing writes each entry with the mode the caller gives it (by default its own, exactly):
 * node-tar's `portable` option, which we keep for the rest (no uid, gid, user names, atime or
 * ctime, a stable gzip header), also clamps every mode to `(mode | 0o600) & ~0o022`, so a 0664
 * or 0444 file would come out 0644. `onWriteEntry` sets the header's mode instead (pinMode; the
 * behaviour it relies on is pinned in test/unit/archive.test.ts).
 */
import { createHash } from 'node:crypto';
import { type Stats, createReadStream, createWriteStream } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type ReadEntry, Unpack, WriteEntry, WriteEntryTar, create, x as extract } from 'tar';
import { type ArchiveLimits, type RuleViolation, normalizeEntryPath, unpackRules, unpackViolation } from '../common/archive-rules.js';
import { ArchiveFormatError, feedTar, headerOf, scanArchive } from '../common/archive-scan.js';
import { PagewrightError } from '../common/errors.js';
import { SHARED_BITS } from './file-modes.js';
import { snapshotTree } from './tree.js';

export type UnpackLimits = ArchiveLimits;

interface UnpackStats {
  entries: number;
  bytes: number;
}

export interface UnpackResult extends UnpackStats {
  /** Each entry's permission bits (& 0o777) as the archive had them, by normalized path. */
  modes: Map<string, number>;
}

export interface UnpackOptions {
  /**
   * Open the tree to the group (a pod: the agent is another uid of the runner's group): files
   * g+rw, directories g+rwx and setgid (file-modes.ts SHARED_BITS), set as each entry is
   * created rather than by a walk over the tree afterwards.
   */
  shareWithGroup?: boolean;
}

/** The job's failure for a broken unpack rule: the code and message a push of the same archive is refused with (common/archive-rules.ts). */
function unpackError(v: RuleViolation, limits: UnpackLimits): PagewrightError {
  const { code, message } = unpackViolation(v, limits);
  return new PagewrightError(code, message);
}

/**
 * Reads the whole archive without writing anything and throws at the first unsafe entry or
 * exceeded limit. Run before extraction, so a rejected archive leaves no trace on disk.
 */
async function inspectArchive(archivePath: string, limits: UnpackLimits): Promise<UnpackStats> {
  const rules = unpackRules(limits);
  let violation: RuleViolation | null;
  try {
    violation = await scanArchive(createReadStream(archivePath, { highWaterMark: 1 << 20 }), rules);
  } catch (err) {
    const why = err instanceof ArchiveFormatError ? (err.cause as Error).message : (err as Error).message;
    throw new PagewrightError('ArtifactCorrupt', `site artifact is not a valid tar.gz: ${why}`, { cause: err });
  }
  if (violation) throw unpackError(violation, limits);
  return { entries: rules.entries, bytes: rules.bytes };
}

/**
 * Extracts `archivePath` (tar or tar.gz) into the empty directory `dest`, after inspectArchive
 * accepted it. The same checks run again during extraction as a second line of defence.
 */
export async function unpackArchive(
  archivePath: string,
  dest: string,
  limits: UnpackLimits,
  opts: UnpackOptions = {},
): Promise<UnpackResult> {
  await inspectArchive(archivePath, limits);
  await mkdir(dest, { recursive: true });
  if ((await readdir(dest)).length > 0) throw new Error(`unpack destination ${dest} is not empty`);
  const share = opts.shareWithGroup === true;
  // directories made inside a setgid directory are setgid too (Linux), so the root is enough
  if (share) await chmod(dest, ((await lstat(dest)).mode & 0o777) | SHARED_BITS.dir);
  const rules = unpackRules(limits);
  const modes = new Map<string, number>();
  let violation: PagewrightError | null = null;
  const unpack: Unpack = new Unpack({
    cwd: dest,
    strict: true,
    preservePaths: false,
    preserveOwner: false,
    unlink: true,
    filter: (_path, entry) => {
      const e = entry as ReadEntry;
      if (!violation) {
        const broken = rules.check(headerOf(e));
        if (broken) violation = unpackError(broken, limits);
      }
      if (violation) {
        unpack.abort(violation);
        return false;
      }
      // no setuid/setgid/sticky bits from an untrusted archive
      if (e.mode !== undefined) {
        e.mode &= 0o777;
        modes.set(normalizeEntryPath(e.path), e.mode);
        if (share) e.mode |= e.type === 'Directory' ? SHARED_BITS.dir & 0o777 : SHARED_BITS.file;
      }
      return true;
    },
  });
  // the group bits must survive the umask (022 in most images); the process runs one job, and
  // nothing else creates files while the site unpacks
  const umask = share ? process.umask(0o002) : null;
  try {
    await feedTar(createReadStream(archivePath, { highWaterMark: 1 << 20 }), unpack);
  } catch (err) {
    if (violation) throw violation;
    throw new PagewrightError('ArtifactCorrupt', `site artifact could not be extracted: ${(err as Error).message}`, { cause: err });
  } finally {
    if (umask !== null) process.umask(umask);
  }
  return { entries: rules.entries, bytes: rules.bytes, modes };
}

const CONTENT_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'SymbolicLink']);

/**
 * Extracts the files and links at `paths` of an archive unpackArchive already took (the input)
 * into `dest`: the base side of the diff (runner/diff.ts), which needs only what changed. A
 * hard link gets its target's content (extracted in a second pass, into `dest`.links).
 */
export async function extractPaths(archivePath: string, dest: string, paths: ReadonlySet<string>): Promise<void> {
  await mkdir(dest, { recursive: true });
  const links = new Map<string, string>();
  const options = { file: archivePath, strict: true, preservePaths: false, preserveOwner: false, unlink: true };
  await extract({
    ...options,
    cwd: dest,
    filter: (path, entry) => {
      const e = entry as ReadEntry;
      const name = normalizeEntryPath(path);
      if (!paths.has(name)) return false;
      if (e.type === 'Link' && e.linkpath) links.set(name, normalizeEntryPath(e.linkpath));
      return CONTENT_TYPES.has(e.type);
    },
  });
  if (links.size === 0) return;
  const targets = new Set(links.values());
  const side = `${dest}.links`;
  await mkdir(side, { recursive: true });
  await extract({
    ...options,
    cwd: side,
    filter: (path, entry) => targets.has(normalizeEntryPath(path)) && CONTENT_TYPES.has((entry as ReadEntry).type),
  });
  for (const [path, target] of links) {
    await mkdir(dirname(join(dest, path)), { recursive: true });
    await copyFile(join(side, target), join(dest, path));
  }
}

export interface PackResult {
  sha256: string;
  size: number;
}

/**
 * The mode to write for an entry from the tree: `path` relative to the packed directory (no
 * `./`, no trailing slash), `diskMode` its lstat mode; undefined keeps the disk's bits.
 */
export type ModeOf = (path: string, diskMode: number) => number | undefined;

/**
 * Packs `entries` (paths relative to `cwd`, in this order) into a tar.gz file, hashing it as it
 * goes. Modes: `modeOf`'s, else each file's own permission bits; entries copied from another
 * archive (`@archive`) keep theirs. Never special bits.
 */
export async function packArchive(cwd: string, entries: string[], outPath: string, modeOf?: ModeOf): Promise<PackResult> {
  const hasher = new Sha256Counter();
  // portable: no uid/gid/user names, so the archive does not depend on who ran the job
  const tarStream = create(
    {
      cwd,
      gzip: { level: 6 },
      portable: true,
      noDirRecurse: true,
      follow: false,
      onWriteEntry: (entry: WriteEntry | WriteEntryTar) => {
        if (entry instanceof WriteEntryTar) entry.mode = (entry.readEntry.mode ?? entry.mode ?? 0o644) & 0o777;
        else if (entry instanceof WriteEntry && entry.stat) {
          const path = normalizeEntryPath(entry.path);
          pinMode(entry, (modeOf?.(path, entry.stat.mode) ?? entry.stat.mode) & 0o777);
        }
      },
    },
    entries,
  );
  await pipeline(tarStream, hasher, createWriteStream(outPath, { flush: true }));
  return { sha256: hasher.digest(), size: hasher.bytes };
}

/**
 * Makes a file entry's header carry `mode` exactly. Called from onWriteEntry, just before
 * node-tar builds the header from `entry.stat` and, because the entry is portable, clamps the
 * mode. So the entry stops being portable and gets a stat that carries only what a portable
 * header takes from it (mode, size, mtime): no uid, gid, atime, ctime, dev, ino or nlink, and
 * so no user name either. Its content is still read by size, as before.
 */
function pinMode(entry: WriteEntry, mode: number): void {
  const st = entry.stat!;
  entry.portable = false;
  entry.stat = { mode: (st.mode & ~0o7777) | mode, size: st.size, mtime: st.mtime } as Stats;
}

/** Packs a whole directory (sorted, links kept as links). */
export async function packDirectory(dir: string, outPath: string): Promise<PackResult> {
  return packArchive(dir, [...(await snapshotTree(dir)).keys()], outPath);
}

/** sha256 and byte count of a stream passing through. */
export class Sha256Counter extends Transform {
  readonly #hash = createHash('sha256');
  bytes = 0;

  /** `maxBytes`: a stream longer than that fails (ArtifactTooLarge), whatever it declared. */
  constructor(private readonly maxBytes = Number.POSITIVE_INFINITY) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      done(new PagewrightError('ArtifactTooLarge', `download exceeds the limit of ${this.maxBytes} bytes`));
      return;
    }
    this.#hash.update(chunk);
    done(null, chunk);
  }

  digest(): string {
    return this.#hash.digest('hex');
  }
}
