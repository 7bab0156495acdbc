/**
 * Snapshots of a directory tree (path -> type, size, sha256 or link target) and their diff.
 * Files changed are computed from these, never taken from the model's word. A second snapshot
 * re-hashes only files whose inode, size, mtime or ctime moved, like git's stat cache.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import type { FileChange } from '../common/schemas.js';

interface TreeEntry {
  type: 'file' | 'dir' | 'symlink';
  size: number;
  /** Files: content hash. Symlinks: hash of the target. */
  sha256: string;
  target?: string;
  /** Permission bits on disk (lstat, & 0o7777): what runner/file-modes.ts compares. */
  mode: number;
  statKey: string;
}

export type Tree = Map<string, TreeEntry>;

const SMALL_FILE_BYTES = 1024 * 1024;

export interface SnapshotOptions {
  /** Relative POSIX paths to leave out, with everything below them. */
  exclude?: (relPath: string) => boolean;
  /** A previous snapshot of the same tree whose hashes may be reused. */
  previous?: Tree;
  concurrency?: number;
}

export async function snapshotTree(root: string, opts: SnapshotOptions = {}): Promise<Tree> {
  const tree: Tree = new Map();
  // stat and hash calls go to libuv's threadpool: keep it busy, one directory level at a time
  const limit = pLimit(opts.concurrency ?? 16);

  async function visit(full: string, relPath: string): Promise<string | null> {
    const st = await lstat(full);
    const statKey = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    const mode = st.mode & 0o7777;
    if (st.isDirectory()) {
      tree.set(relPath, { type: 'dir', size: 0, sha256: '', mode, statKey });
      return full;
    }
    if (st.isSymbolicLink()) {
      const target = await readlink(full);
      tree.set(relPath, { type: 'symlink', size: 0, sha256: sha256Of(target), target, mode, statKey });
    } else if (st.isFile()) {
      const prev = opts.previous?.get(relPath);
      const reuse = prev && prev.type === 'file' && prev.statKey === statKey;
      tree.set(relPath, reuse ? prev : { type: 'file', size: st.size, sha256: await hashFile(full, st.size), mode, statKey });
    }
    // sockets, FIFOs, devices: never part of a site, and never packed
    return null;
  }

  async function walk(dir: string, rel: string): Promise<void> {
    const names = (await readdir(dir))
      .map((name) => ({ name, relPath: rel ? `${rel}/${name}` : name }))
      .filter((e) => !opts.exclude?.(e.relPath));
    const subdirs = await Promise.all(names.map((e) => limit(() => visit(join(dir, e.name), e.relPath))));
    await Promise.all(subdirs.map((sub, i) => (sub ? walk(sub, names[i]!.relPath) : undefined)));
  }

  await walk(root, '');
  return new Map([...tree.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Changed files and links (directories are implied by their contents), sorted by path. A file
 * whose content is the same is `modified` when `modeChanged` says its mode is not (file-modes.ts).
 */
export function diffTrees(before: Tree, after: Tree, modeChanged: (path: string) => boolean = () => false): FileChange[] {
  const changes: FileChange[] = [];
  for (const [path, entry] of after) {
    if (entry.type === 'dir') continue;
    const old = before.get(path);
    if (!old || old.type === 'dir') changes.push({ path, change: 'added' });
    else if (old.type !== entry.type || old.sha256 !== entry.sha256 || modeChanged(path)) changes.push({ path, change: 'modified' });
  }
  for (const [path, entry] of before) {
    if (entry.type === 'dir') continue;
    const now = after.get(path);
    if (!now || now.type === 'dir') changes.push({ path, change: 'deleted' });
  }
  return changes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Small files in one read; large ones streamed, so memory never grows with file size. */
export async function hashFile(path: string, size = Infinity): Promise<string> {
  if (size <= SMALL_FILE_BYTES)
    return createHash('sha256')
      .update(await readFile(path))
      .digest('hex');
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function sha256Of(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
