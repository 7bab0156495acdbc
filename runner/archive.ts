/**
 * Site archives: safe extraction of an untrusted tar.gz, and packing of the edited site.
 *
 * Extraction applies the archive rules (common/archive-rules.ts: relative paths without `..`,
 * files, directories and links that point down only, no devices or FIFOs, entry and byte
 * limits) to every entry before writing anything, and again while writing as a second line of
 * defence; setuid/setgid/sticky bits are stripped. The first violation aborts the whole
 * extraction and the caller discards the directory.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type ReadEntry, Unpack, create } from 'tar';
import { type ArchiveLimits, ArchiveRules, type RuleViolation } from '../common/archive-rules.js';
import { ArchiveFormatError, feedTar, headerOf, scanArchive } from '../common/archive-scan.js';
import { PagewrightError } from '../common/errors.js';
import { snapshotTree } from './tree.js';

export type UnpackLimits = ArchiveLimits;

export interface UnpackStats {
  entries: number;
  bytes: number;
}

class UnsafeArchiveError extends PagewrightError {
  constructor(message: string) {
    super('UnsafeArchive', message);
    this.name = 'UnsafeArchiveError';
  }
}

/** A site archive may carry setuid bits (they are stripped), not an output (archive-rules.ts). */
function unpackRules(limits: UnpackLimits): ArchiveRules {
  return new ArchiveRules(limits, { specialBits: 'allow' });
}

function unpackError(v: RuleViolation, limits: UnpackLimits): PagewrightError {
  if (v.rule === 'TooManyEntries') return new UnsafeArchiveError(`archive has more than ${limits.maxEntries} entries`);
  if (v.rule === 'TooManyBytes') return new PagewrightError('ArtifactTooLarge', `archive unpacks to more than ${limits.maxBytes} bytes`);
  return new UnsafeArchiveError(`unsafe archive entry ${JSON.stringify(v.path.slice(0, 200))}: ${v.why}`);
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
export async function unpackArchive(archivePath: string, dest: string, limits: UnpackLimits): Promise<UnpackStats> {
  await inspectArchive(archivePath, limits);
  await mkdir(dest, { recursive: true });
  if ((await readdir(dest)).length > 0) throw new Error(`unpack destination ${dest} is not empty`);
  const rules = unpackRules(limits);
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
      if (e.mode !== undefined) e.mode &= 0o777;
      return true;
    },
  });
  try {
    await feedTar(createReadStream(archivePath, { highWaterMark: 1 << 20 }), unpack);
  } catch (err) {
    if (violation) throw violation;
    throw new PagewrightError('ArtifactCorrupt', `site artifact could not be extracted: ${(err as Error).message}`, { cause: err });
  }
  return { entries: rules.entries, bytes: rules.bytes };
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
