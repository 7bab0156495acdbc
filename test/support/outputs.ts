/** Reads a job's output artifact back from storage, unpacked, to assert on the real edit. */
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { unpackArchive } from '../../runner/archive.js';
import type { StorageClient } from '../../common/storage-client.js';

export async function readOutputFile(storage: StorageClient, jobId: string, path: string): Promise<{ text: string; version: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-output-'));
  try {
    const download = await storage.getJobObject(jobId, 'output.tar.gz');
    await pipeline(download.body, createWriteStream(join(dir, 'output.tar.gz')));
    await unpackArchive(join(dir, 'output.tar.gz'), join(dir, 'site'), { maxEntries: 10_000, maxBytes: 256 * 1024 * 1024 });
    return { text: await readFile(join(dir, 'site', path), 'utf8'), version: download.version };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
