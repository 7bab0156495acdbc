/**
 * Content-addressed blobs: blobs/sha256/<aa>/<digest>. A blob is streamed to a temp file while
 * its size and its sha256 (on a worker thread: off-thread-hasher.ts) are computed, fsynced,
 * then renamed to its digest; memory use does not depend on the blob's size. Equal content is
 * stored once.
 */
import { createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StorageError } from './errors.js';
import { commitFile, tempPath } from './fs-durable.js';
import { type HashSession, OffThreadHasher } from './off-thread-hasher.js';

export interface PutBlobOptions {
  maxBytes: number;
  /** The client's digest; a mismatch rejects the blob. */
  expectedSha256?: string;
  /** A size the client announced (Content-Length); checked against maxBytes before reading. */
  declaredSize?: number;
}

export interface BlobInfo {
  version: string;
  size: number;
}

export class BlobStore {
  readonly #root: string;
  readonly #tmp: string;
  readonly #hasher = new OffThreadHasher();

  constructor(dataDir: string) {
    this.#root = join(dataDir, 'blobs', 'sha256');
    this.#tmp = join(dataDir, 'tmp');
  }

  get tmpDir(): string {
    return this.#tmp;
  }

  /** Creates the directories and drops temp files a crash left behind. */
  async init(): Promise<void> {
    await mkdir(this.#root, { recursive: true });
    await mkdir(this.#tmp, { recursive: true });
    for (const name of await readdir(this.#tmp)) await rm(join(this.#tmp, name), { force: true, recursive: true });
  }

  /** Stops the hashing worker. */
  close(): Promise<void> {
    return this.#hasher.close();
  }

  pathOf(version: string): string {
    return join(this.#root, version.slice(0, 2), version);
  }

  async put(body: Readable, opts: PutBlobOptions): Promise<BlobInfo> {
    if (opts.declaredSize !== undefined && opts.declaredSize > opts.maxBytes) {
      throw tooLarge(opts.maxBytes);
    }
    const tmp = tempPath(this.#tmp);
    const hash = this.#hasher.session();
    const meter = new HashingLimiter(opts.maxBytes, hash);
    let version: string;
    try {
      // flush: fsync before close, so a renamed blob is always complete on disk
      await pipeline(body, meter, createWriteStream(tmp, { flags: 'wx', mode: 0o640, flush: true, highWaterMark: 1 << 20 }));
      version = await hash.digest();
    } catch (err) {
      hash.drop();
      await rm(tmp, { force: true });
      if (meter.overflowed) throw tooLarge(opts.maxBytes);
      throw err;
    }
    if (opts.expectedSha256 !== undefined && opts.expectedSha256 !== version) {
      await rm(tmp, { force: true });
      throw new StorageError('DigestMismatch', `body sha256 is ${version}, the request said ${opts.expectedSha256}`);
    }
    try {
      await commitFile(tmp, this.pathOf(version));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return { version, size: meter.bytes };
  }

  async size(version: string): Promise<number | null> {
    try {
      return (await stat(this.pathOf(version))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  createReadStream(version: string): ReadStream {
    return createReadStream(this.pathOf(version), { highWaterMark: 1 << 20 });
  }
}

function tooLarge(maxBytes: number): StorageError {
  return new StorageError('PayloadTooLarge', `body exceeds the limit of ${maxBytes} bytes`);
}

/** Passes bytes through while hashing and counting them; fails once the limit is passed. */
class HashingLimiter extends Transform {
  readonly #hash: HashSession;
  readonly #max: number;
  bytes = 0;
  overflowed = false;

  constructor(maxBytes: number, hash: HashSession) {
    super();
    this.#max = maxBytes;
    this.#hash = hash;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.#max) {
      this.overflowed = true;
      done(tooLarge(this.#max));
      return;
    }
    const behind = this.#hash.update(chunk);
    if (behind) behind.then(() => done(null, chunk), done);
    else done(null, chunk);
  }
}
