/**
 * Durable file writes: temp file in the same filesystem, fsync, rename, fsync the directory.
 * After the promise resolves the data survives a crash or power loss; before, the old content
 * (or nothing) is there, never a torn file.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export function tempPath(tmpDir: string): string {
  return join(tmpDir, `${Date.now()}-${randomBytes(8).toString('hex')}.tmp`);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Moves a fully written and fsynced temp file into place durably. */
export async function commitFile(tmp: string, target: string): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  await rename(tmp, target);
  await fsyncDir(dirname(target));
}

export async function writeFileDurably(target: string, data: string | Uint8Array, tmpDir: string): Promise<void> {
  const tmp = tempPath(tmpDir);
  const fh = await open(tmp, 'wx', 0o640);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await commitFile(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
