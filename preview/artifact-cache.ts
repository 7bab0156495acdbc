/**
 * Extracted site versions on local disk, for serving as websites. A version is a sha256 of its
 * tar.gz, content-addressed and immutable, so each is downloaded and extracted once into
 * `<dir>/<version>/` and then served from there until evicted.
 *
 *   - verified: storage names the version it sends (its ETag) and it must be the one asked for;
 *     the bytes are hashed as they stream and must hash to it, else nothing is kept;
 *   - safe: extraction goes through the runner's archive rules (common/archive-rules.ts: no
 *     absolute paths, no `..`, links that only point down, no devices or FIFOs, the entry and
 *     byte limits; setuid/setgid stripped), checked on every header before node-tar writes the
 *     entry; modes are then fixed (files 0644, directories 0755), and the finished tree is
 *     walked once more: every symlink must resolve inside it;
 *   - atomic: into a temp dir beside the others, renamed into place only once complete, so a
 *     crash leaves a `.tmp-*` dir (removed at the next start), never a half tree under a
 *     version's name;
 *   - shared: concurrent requests for a version that is not there yet wait for one download;
 *   - bounded: past `maxBytes` (disk blocks of the extracted trees), the least recently used
 *     versions that no response is reading are removed (renamed away first, then deleted).
 *     A version bigger than the whole budget is still served, and removed once released.
 * A version refused by the rules stays refused (it is immutable): the verdict is remembered,
 * so a hostile archive is not downloaded again on every request.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readlink, realpath, rename, rm, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { type ReadEntry, Unpack } from 'tar';
import { type ArchiveLimits, ArchiveRules, type RuleViolation, unpackViolation } from '../common/archive-rules.js';
import { feedTar, headerOf } from '../common/archive-scan.js';
import { PagewrightError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { SHA256_PATTERN } from '../common/schemas.js';
import type { Download } from '../common/storage-client.js';

export interface ArtifactCacheOptions {
  dir: string;
  /** Disk the extracted versions may use together. */
  maxBytes: number;
  limits: ArchiveLimits;
  logger: Logger;
}

/** An extracted version, held open for a response: call release() when it is done. */
export interface CachedTree {
  version: string;
  /** The tree's root. */
  dir: string;
  release(): void;
}

export interface ArtifactCacheStats {
  versions: number;
  bytes: number;
  /** Downloads started (one per version fetched, however many requests waited on it). */
  downloads: number;
  /** Acquisitions answered from disk or from a download already under way. */
  hits: number;
  evictions: number;
}

interface Entry {
  version: string;
  dir: string;
  bytes: number;
  pins: number;
}

const TEMP_PREFIX = '.tmp-';
const EVICTED_PREFIX = '.evicted-';
const REMEMBERED_REFUSALS = 1000;

/** The refusal a rule gives, with the runner's unpack codes and messages. */
function refusal(v: RuleViolation, limits: ArchiveLimits): PagewrightError {
  const { code, message } = unpackViolation(v, limits);
  return new PagewrightError(code, message);
}

class Sha256Tap extends Transform {
  readonly #hash = createHash('sha256');
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#hash.update(chunk);
    done(null, chunk);
  }
  digest(): string {
    return this.#hash.digest('hex');
  }
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !rel.startsWith(sep));
}

/** Disk blocks of a tree (what `du` counts), and every symlink checked to resolve inside it. */
async function walkTree(root: string): Promise<number> {
  const realRoot = await realpath(root);
  let bytes = (await lstat(root)).blocks * 512;
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    const st = await lstat(path);
    bytes += st.blocks * 512;
    if (st.isSymbolicLink()) {
      const target = await realpath(path).catch(() => null);
      // a dangling link is harmless (send answers 404); one that resolves outside is not
      if (target !== null && !inside(realRoot, target)) {
        throw new PagewrightError(
          'UnsafeArchive',
          `symlink ${JSON.stringify(relative(root, path))} -> ${await readlink(path)} resolves outside the site`,
        );
      }
    } else if (!st.isFile() && !st.isDirectory()) {
      throw new PagewrightError('UnsafeArchive', `${JSON.stringify(relative(root, path))} is neither a file, a directory nor a link`);
    }
  }
  return bytes;
}

export class ArtifactCache {
  readonly #o: ArtifactCacheOptions;
  /** Extracted versions, least recently used first (Map order, refreshed on use). */
  readonly #entries = new Map<string, Entry>();
  readonly #inFlight = new Map<string, Promise<Entry>>();
  readonly #refused = new Map<string, PagewrightError>();
  /** Evicted versions still being removed, by version. */
  readonly #deletions = new Map<string, Promise<void>>();
  #ready: Promise<void> | null = null;
  #bytes = 0;
  #downloads = 0;
  #hits = 0;
  #evictions = 0;

  constructor(opts: ArtifactCacheOptions) {
    this.#o = { ...opts, dir: resolve(opts.dir) };
  }

  /**
   * Adopts the versions a previous process left (complete by construction: only renamed into
   * place when done), oldest first, and removes its temp and evicted dirs.
   */
  init(): Promise<void> {
    this.#ready ??= this.#init();
    return this.#ready;
  }

  async #init(): Promise<void> {
    await mkdir(this.#o.dir, { recursive: true });
    const found: Array<{ entry: Entry; mtimeMs: number }> = [];
    for (const d of await readdir(this.#o.dir, { withFileTypes: true })) {
      const path = join(this.#o.dir, d.name);
      if (d.name.startsWith(TEMP_PREFIX) || d.name.startsWith(EVICTED_PREFIX)) {
        await rm(path, { recursive: true, force: true });
      } else if (d.isDirectory() && SHA256_PATTERN.test(d.name)) {
        // the same walk as after an extraction: a tree with a link out of it is not adopted
        const bytes = await walkTree(path).catch((err: unknown) => {
          this.#o.logger.warn('cached version not adopted', { version: d.name, error: String(err) });
          return null;
        });
        if (bytes === null) await rm(path, { recursive: true, force: true });
        else found.push({ entry: { version: d.name, dir: path, bytes, pins: 0 }, mtimeMs: (await stat(path)).mtimeMs });
      }
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const { entry } of found) this.#add(entry);
    this.#evict();
  }

  stats(): ArtifactCacheStats {
    return { versions: this.#entries.size, bytes: this.#bytes, downloads: this.#downloads, hits: this.#hits, evictions: this.#evictions };
  }

  /**
   * The extracted tree of `version`, downloading it with `open` if it is not on disk. `open`
   * must answer the tar.gz storage holds under that version (storage's ETag is checked).
   */
  async acquire(version: string, open: () => Promise<Download>): Promise<CachedTree> {
    if (!SHA256_PATTERN.test(version)) throw new PagewrightError('InvalidVersion', 'a version is a lowercase hex sha256');
    await this.init();
    const refused = this.#refused.get(version);
    if (refused) throw refused;
    let entry = this.#entries.get(version);
    if (entry) this.#hits++;
    while (!entry) {
      let pending = this.#inFlight.get(version);
      if (pending !== undefined) this.#hits++;
      else {
        pending = this.#fetch(version, open).finally(() => this.#inFlight.delete(version));
        this.#inFlight.set(version, pending);
      }
      const fetched = await pending;
      // evicted between its extraction and this turn (another release made room): fetch again
      entry = this.#entries.get(version) === fetched ? fetched : undefined;
    }
    // most recently used: to the end of the map
    this.#entries.delete(version);
    this.#entries.set(version, entry);
    entry.pins++;
    const held = entry;
    let released = false;
    return {
      version,
      dir: held.dir,
      release: () => {
        if (released) return;
        released = true;
        held.pins--;
        if (held.pins === 0) this.#evict();
      },
    };
  }

  /** Waits for the deletions under way (evicted versions are removed in the background). */
  async close(): Promise<void> {
    await Promise.all(this.#deletions.values());
  }

  async #fetch(version: string, open: () => Promise<Download>): Promise<Entry> {
    this.#downloads++;
    const temp = await mkdtemp(join(this.#o.dir, TEMP_PREFIX));
    try {
      await this.#extract(version, open, temp);
      const bytes = await walkTree(temp);
      const dir = join(this.#o.dir, version);
      // an eviction of this version may still be moving the old tree away
      await this.#deletions.get(version);
      await rename(temp, dir);
      const entry: Entry = { version, dir, bytes, pins: 0 };
      this.#add(entry);
      this.#o.logger.info('version extracted', { version, bytes });
      // pinned by the caller right after; evict others now, not this one
      entry.pins++;
      this.#evict();
      entry.pins--;
      return entry;
    } catch (err) {
      await rm(temp, { recursive: true, force: true });
      if (err instanceof PagewrightError && (err.code === 'UnsafeArchive' || err.code === 'ArtifactTooLarge')) {
        if (this.#refused.size >= REMEMBERED_REFUSALS) this.#refused.delete(this.#refused.keys().next().value!);
        this.#refused.set(version, err);
        this.#o.logger.warn('version refused', { version, code: err.code, error: err.message });
      }
      throw err;
    }
  }

  async #extract(version: string, open: () => Promise<Download>, dest: string): Promise<void> {
    const download = await open();
    if (download.version !== version) {
      download.body.once('error', () => {}); // the abort of our own destroy()
      download.body.destroy();
      throw new PagewrightError('ArtifactCorrupt', `storage sent version ${download.version || '(none)'} for ${version}`);
    }
    const limits = this.#o.limits;
    const rules = new ArchiveRules(limits, { specialBits: 'allow' });
    let violation: PagewrightError | null = null;
    const unpack: Unpack = new Unpack({
      cwd: dest,
      strict: true,
      preservePaths: false,
      preserveOwner: false,
      filter: (_path, e) => {
        const entry = e as ReadEntry;
        if (!violation) {
          const broken = rules.check(headerOf(entry));
          if (broken) violation = refusal(broken, limits);
        }
        if (violation) {
          unpack.abort(violation);
          return false;
        }
        // only read here: no exec, setuid, sticky or unreadable modes from the archive
        entry.mode = entry.type === 'Directory' ? 0o755 : 0o644;
        return true;
      },
    });
    const tap = new Sha256Tap();
    download.body.once('error', (err) => tap.destroy(err));
    try {
      await feedTar(download.body.pipe(tap), unpack);
    } catch (err) {
      if (violation) throw violation;
      throw new PagewrightError('ArtifactCorrupt', `version ${version} could not be extracted: ${(err as Error).message}`, { cause: err });
    }
    const digest = tap.digest();
    if (digest !== version) throw new PagewrightError('ArtifactCorrupt', `storage's bytes for ${version} hash to ${digest}`);
  }

  #add(entry: Entry): void {
    this.#entries.set(entry.version, entry);
    this.#bytes += entry.bytes;
  }

  /** Removes unpinned versions, least recently used first, until the rest fits. */
  #evict(): void {
    if (this.#bytes <= this.#o.maxBytes) return;
    for (const entry of [...this.#entries.values()]) {
      if (this.#bytes <= this.#o.maxBytes) break;
      if (entry.pins > 0) continue;
      this.#entries.delete(entry.version);
      this.#bytes -= entry.bytes;
      this.#evictions++;
      this.#o.logger.info('version evicted', { version: entry.version, bytes: entry.bytes });
      const gone = join(this.#o.dir, `${EVICTED_PREFIX}${randomBytes(6).toString('hex')}`);
      const deletion = rename(entry.dir, gone)
        .then(() => rm(gone, { recursive: true, force: true }))
        .catch((err: unknown) => this.#o.logger.warn('evicted version not removed', { version: entry.version, error: String(err) }))
        .finally(() => {
          if (this.#deletions.get(entry.version) === deletion) this.#deletions.delete(entry.version);
        });
      this.#deletions.set(entry.version, deletion);
    }
  }
}
