/**
 * The file modes of a job's output (issue 16). A publish must not change the modes of the site
 * around the agent's edit: the output carries the input archive's permission bits for every path
 * the agent left alone, whatever the runner did to the tree on disk to let the agent work on it.
 *
 * On disk the modes are not the input's: unpack applies the process umask, and in a pod the
 * runner opens the site to the agent's uid through the group they share (files g+rw, directories
 * g+rwx and setgid: SHARED_BITS). So the output's modes are never read off the tree alone; each
 * path gets, in order:
 *   - created by the agent (not in the input, or now of another type): ordinary modes, 0644, or
 *     0755 for a file the agent made executable (owner x), 0755 for a directory, 0777 for a link;
 *   - in the input: the input's bits, except bits the agent changed itself (chmod): those take
 *     the agent's value. What the agent changed is the difference between the snapshots taken
 *     before and after it ran, outside the bits the runner set for it: a file the agent rewrites
 *     under its own umask (`sed -i` makes a new file, 0644) reads as no change of the group bits,
 *     while `chmod +x` or `chmod o-r` is a change the output keeps. In a pod the group's read and
 *     write bits of files (and rwx of directories) are therefore never the agent's to change:
 *     they cannot be told from its umask. This holds whether the content changed or not: a mode
 *     the agent set is an edit (and counted as one, `modified`).
 * Special bits (setuid, setgid, sticky) never come through: unpack strips them, and an output
 * must not carry them (common/archive-rules.ts).
 */
import type { Tree } from './tree.js';

/** The group bits the runner adds for the agent in a pod (runner/archive.ts unpackArchive). */
export const SHARED_BITS = { file: 0o060, dir: 0o2070 } as const;

const CREATED_MODES = { file: 0o644, executable: 0o755, dir: 0o755, symlink: 0o777 } as const;

type EntryType = 'file' | 'dir' | 'symlink';

/** Permission bits the agent may have changed (those the runner set itself are not its). */
function agentBits(type: EntryType, shared: boolean): number {
  if (!shared || type === 'symlink') return 0o777;
  return 0o777 & ~(type === 'dir' ? SHARED_BITS.dir : SHARED_BITS.file);
}

function createdMode(type: EntryType, diskMode: number): number {
  if (type === 'dir') return CREATED_MODES.dir;
  if (type === 'symlink') return CREATED_MODES.symlink;
  return diskMode & 0o100 ? CREATED_MODES.executable : CREATED_MODES.file;
}

export interface OutputModes {
  /** The output's mode for a path of the after snapshot. */
  of(path: string): number;
  /** True when the output's mode differs from the input's for a path the input had (the agent's chmod). */
  changed(path: string): boolean;
}

/**
 * @param input the permission bits of each input archive entry (unpackArchive's `modes`)
 * @param before the tree after unpack, before the agent ran; @param after the tree it left
 * @param shared whether the runner opened the tree to the agent's group (SHARED_BITS)
 */
export function outputModes(input: ReadonlyMap<string, number>, before: Tree, after: Tree, shared: boolean): OutputModes {
  const modes = new Map<string, number>();
  const inherited = new Set<string>();
  for (const [path, now] of after) {
    const was = before.get(path);
    const inputMode = input.get(path);
    if (!was || was.type !== now.type || inputMode === undefined) {
      modes.set(path, createdMode(now.type, now.mode));
      continue;
    }
    const bySelf = (was.mode ^ now.mode) & agentBits(now.type, shared);
    modes.set(path, ((inputMode & ~bySelf) | (now.mode & bySelf)) & 0o777);
    inherited.add(path);
  }
  return {
    of(path) {
      const mode = modes.get(path);
      if (mode === undefined) throw new Error(`no output mode for ${path}: not in the after snapshot`);
      return mode;
    },
    changed: (path) => inherited.has(path) && modes.get(path) !== ((input.get(path) ?? 0) & 0o777),
  };
}
