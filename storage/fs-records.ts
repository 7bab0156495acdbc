/**
 * The fs backend's records (backend.ts): one JSON file per record under the data directory,
 * written durably (temp file, fsync, rename: a crash leaves the old or the new file). The
 * compare-and-swap is decided under a per-path lock in this process, which is enough because
 * one process owns the directory; the tag is the content's sha256.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { RecordBackend, StoredRecord, WriteCondition } from './backend.js';
import { writeFileDurably } from './fs-durable.js';
import { KeyedMutex } from './keyed-mutex.js';

export class FsRecords implements RecordBackend {
  readonly #dir: string;
  readonly #tmp: string;
  readonly #locks = new KeyedMutex();

  constructor(dataDir: string, tmpDir: string) {
    this.#dir = dataDir;
    this.#tmp = tmpDir;
  }

  async read(path: string): Promise<StoredRecord | null> {
    let text: string;
    try {
      text = await readFile(join(this.#dir, path), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return { text, tag: tagOf(text) };
  }

  write(path: string, text: string, condition: WriteCondition): Promise<boolean> {
    return this.#locks.run(path, async () => {
      const current = await this.read(path);
      const holds = 'absent' in condition ? current === null : current?.tag === condition.tag;
      if (!holds) return false;
      await writeFileDurably(join(this.#dir, path), text, this.#tmp);
      return true;
    });
  }

  async *list(dir: string): AsyncGenerator<string> {
    let names: string[];
    try {
      names = await readdir(join(this.#dir, dir));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    yield* names;
  }
}

function tagOf(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
