/**
 * The site's own `.codex/` is moved aside for the run and put back, byte for byte, before
 * packing: the agent sees only the container's instructions (a site cannot ship its own agent
 * config), and a publish never changes `.codex/`. Moving (rename) rather than copying keeps
 * modes, times and links exactly, and a `.codex` that is a symlink cannot redirect the write.
 */
import { lstat, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const CODEX_DIR = '.codex';
export const INSTRUCTIONS_FILE = 'instructions.md';

export interface StashedCodexDir {
  existed: boolean;
  stashPath: string;
}

/** Moves site/.codex (if any) to stashDir and writes a fresh site/.codex/instructions.md. */
export async function installInstructions(siteDir: string, stashDir: string, instructions: string): Promise<StashedCodexDir> {
  const live = join(siteDir, CODEX_DIR);
  const stashPath = join(stashDir, CODEX_DIR);
  await mkdir(stashDir, { recursive: true });
  await rm(stashPath, { recursive: true, force: true });
  const existed = await exists(live);
  if (existed) await rename(live, stashPath);
  await mkdir(live);
  await writeFile(join(live, INSTRUCTIONS_FILE), instructions, { mode: 0o644 });
  return { existed, stashPath };
}

/** Removes whatever is at site/.codex now and puts the original back. */
export async function restoreCodexDir(siteDir: string, stashed: StashedCodexDir): Promise<void> {
  const live = join(siteDir, CODEX_DIR);
  await rm(live, { recursive: true, force: true });
  if (stashed.existed) await rename(stashed.stashPath, live);
}

export function isCodexPath(relPath: string): boolean {
  return relPath === CODEX_DIR || relPath.startsWith(`${CODEX_DIR}/`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
