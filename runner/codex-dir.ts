/**
 * The site's own `.codex/`: the agent sees only the container's instructions there (a site
 * cannot ship its own agent config), and the output carries `.codex/` exactly as the input had
 * it, so a publish never changes it.
 *
 * Exactly, and out of the agent's reach: the entries are copied, as tar entries (bytes, modes,
 * times, links unchanged; only setuid, setgid and sticky bits dropped), from the input archive into a stash in the runner's private
 * directory, which the agent cannot write (in a pod it is a volume the agent container does not
 * even mount). Packing takes the site without its `.codex/` and appends the stash; whatever the
 * agent did to `.codex/` in the site is never read.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Pack, WriteEntryTar, list } from 'tar';

const CODEX_DIR = '.codex';
const INSTRUCTIONS_FILE = 'instructions.md';

export function isCodexPath(relPath: string): boolean {
  return relPath === CODEX_DIR || relPath.startsWith(`${CODEX_DIR}/`);
}

/** Copies the `.codex/` entries of the input archive into an (uncompressed) tar; false when it has none. */
export async function stashCodexEntries(inputArchive: string, stashTar: string): Promise<boolean> {
  // the entries' modes as they are (portable alone would clamp them to 0644/0755), special bits
  // stripped as unpack strips them from the rest of the site
  const pack = new Pack({
    portable: true,
    onWriteEntry: (entry) => {
      const e = entry as unknown as WriteEntryTar;
      if (e instanceof WriteEntryTar) e.mode = (e.readEntry.mode ?? e.mode ?? 0o644) & 0o777;
    },
  });
  const written = pipeline(pack, createWriteStream(stashTar));
  let found = 0;
  await list({
    file: inputArchive,
    noResume: true,
    filter: (path) => isCodexPath(posix.normalize(path.replace(/^\.\//, '')).replace(/\/$/, '')),
    onReadEntry: (entry) => {
      found++;
      pack.add(entry);
    },
  });
  pack.end();
  await written;
  if (found === 0) await rm(stashTar, { force: true });
  return found > 0;
}

/** Replaces whatever `.codex/` the site has with one holding the container's instructions. */
export async function installInstructions(siteDir: string, instructions: string): Promise<void> {
  const live = join(siteDir, CODEX_DIR);
  await rm(live, { recursive: true, force: true });
  await mkdir(live);
  await writeFile(join(live, INSTRUCTIONS_FILE), instructions, { mode: 0o644 });
}
