/**
 * The agent's edited site, checked before the runner packs it (DESIGN "Security": outputs are
 * checked before packing and before publish with the same rules as unpack). The agent is an
 * attacker: it may leave a symlink to /etc, a FIFO that would hang the packer, a setuid binary,
 * a million files or a file the packer cannot read. Whatever the next job's unpack would refuse
 * (common/archive-rules.ts), and whatever cannot be packed or served, fails the job with
 * `UnsafeOutput` naming the first offending path; storage applies the same rules again to the
 * packed output before it publishes it.
 *
 * The walk uses lstat (it never follows a link) and visits each directory's names in sorted
 * order, depth first, so the first offending path is the same on every run. It holds at most
 * maxEntries + 1 entries, and about twice as many names of one directory, however many files
 * the agent made: an agent must not be able to make the runner run out of memory, which would
 * be retried as an infrastructure failure (measured: 200,000 names in one directory, a 5000
 * entry limit: refused in 0.3 s, RSS +1 MiB; a 5000-entry site passes in 0.25-0.3 s). Run it after the agent and everything it started have been stopped:
 * the tree must not change under the walk (a check-then-use race is the agent's only lever).
 */
import type { Stats } from 'node:fs';
import { constants } from 'node:fs';
import { access, lstat, opendir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { type ArchiveLimits, ArchiveRules, type EntryHeader, describeViolation } from '../common/archive-rules.js';
import { PagewrightError } from '../common/errors.js';

export interface OutputCheckOptions {
  /** Relative POSIX paths to leave out, with everything below them (as in tree.ts). */
  exclude?: (relPath: string) => boolean;
}

export interface OutputStats {
  entries: number;
  bytes: number;
}

interface Walked {
  path: string;
  /** null for a name that is refused before it is looked at (badName). */
  st: Stats | null;
  linkpath?: string;
  /** Why the packer could not read it. */
  unreadable?: string;
  /** Why the name itself is refused (not UTF-8). */
  badName?: string;
}

function unsafe(message: string): PagewrightError {
  return new PagewrightError('UnsafeOutput', `unsafe output: ${message}`);
}

/**
 * Throws PagewrightError('UnsafeOutput') at the first offending entry; returns the counts the
 * packed archive will have. A hard link whose other names are excluded counts as leaving the
 * site, so check the tree exactly as it will be packed.
 */
export async function checkOutputTree(siteDir: string, limits: ArchiveLimits, opts: OutputCheckOptions = {}): Promise<OutputStats> {
  const root = await lstat(siteDir).catch(() => null);
  // the agent could have replaced the site directory itself with a link
  if (!root?.isDirectory()) throw unsafe(`the site directory ${siteDir} is not a directory`);
  const cap = limits.maxEntries + 1;
  const walked = await walk(siteDir, cap, opts.exclude);
  const complete = walked.length < cap;

  // regular files with more than one name: where the packer will write a hard link
  const inodes = new Map<string, { first: string; seen: number; nlink: number }>();
  for (const e of walked) {
    if (!e.st?.isFile() || e.st.nlink < 2) continue;
    const key = `${e.st.dev}:${e.st.ino}`;
    const known = inodes.get(key);
    if (known) known.seen++;
    else inodes.set(key, { first: e.path, seen: 1, nlink: e.st.nlink });
  }

  const rules = new ArchiveRules(limits, { specialBits: 'refuse' });
  for (const e of walked) {
    if (!e.st) throw unsafe(describeViolation({ rule: 'UnsafePath', path: e.path, why: e.badName ?? 'unnamed' }));
    const inode = e.st.isFile() && e.st.nlink > 1 ? inodes.get(`${e.st.dev}:${e.st.ino}`) : undefined;
    const violation = rules.check(headerOf(e.path, e.st, e.linkpath, inode?.first));
    if (violation) throw unsafe(describeViolation(violation));
    if (e.unreadable) throw unsafe(describeViolation({ rule: 'Unreadable', path: e.path, why: e.unreadable }));
    // only a complete walk can tell whether every name of the file is inside
    if (complete && inode && inode.first === e.path && inode.seen < inode.nlink) {
      throw unsafe(
        describeViolation({
          rule: 'LinkEscapes',
          path: e.path,
          why: `hard link to a file outside the site (${inode.nlink} names, ${inode.seen} inside)`,
        }),
      );
    }
  }
  return { entries: rules.entries, bytes: rules.bytes };
}

/** The entry as the packer will write it: a second name of a file becomes a hard link to the first. */
function headerOf(path: string, st: Stats, linkpath: string | undefined, firstName: string | undefined): EntryHeader {
  if (st.isFile()) {
    if (firstName !== undefined && firstName !== path) return { path, type: 'Link', linkpath: firstName, mode: st.mode, size: 0 };
    return { path, type: 'File', mode: st.mode, size: st.size };
  }
  if (st.isDirectory()) return { path, type: 'Directory', mode: st.mode };
  if (st.isSymbolicLink()) return { path, type: 'SymbolicLink', linkpath, mode: st.mode };
  const type = st.isFIFO()
    ? 'FIFO'
    : st.isCharacterDevice()
      ? 'CharacterDevice'
      : st.isBlockDevice()
        ? 'BlockDevice'
        : st.isSocket()
          ? 'Socket'
          : 'Unknown';
  return { path, type, mode: st.mode };
}

const mode = (st: Stats) => (st.mode & 0o7777).toString(8).padStart(3, '0');

/** Depth-first, names sorted, at most `cap` entries. */
async function walk(root: string, cap: number, exclude: ((relPath: string) => boolean) | undefined): Promise<Walked[]> {
  const out: Walked[] = [];
  // lstat and friends go to libuv's threadpool: a directory's names are looked at in parallel
  const limit = pLimit(16);

  async function visitDir(dir: string, rel: string): Promise<void> {
    const names = await smallestNames(dir, rel, cap - out.length, exclude);
    const looked = await Promise.all(
      names.map(async ({ name, badName }) => {
        const path = rel ? `${rel}/${name}` : name;
        const full = join(dir, name);
        // a name that is not UTF-8 cannot be looked up by its lossy string: refused as it is
        const e: Walked = badName ? { path, st: null, badName } : await limit(() => lookAt(full, path));
        return { e, full };
      }),
    );
    for (const { e, full } of looked) {
      if (out.length >= cap) return;
      out.push(e);
      if (e.st?.isDirectory() && !e.unreadable) await visitDir(full, e.path);
    }
  }

  await visitDir(root, '');
  return out;
}

async function lookAt(full: string, path: string): Promise<Walked> {
  const st = await lstat(full);
  const e: Walked = { path, st };
  if (st.isSymbolicLink()) e.linkpath = await readlink(full);
  else if (st.isFile()) e.unreadable = await unreadable(full, st, 0o400, 'file');
  else if (st.isDirectory()) e.unreadable = await unreadable(full, st, 0o500, 'directory');
  return e;
}

/**
 * Unreadable: no class (owner, group, others) has the bits `needed` (read; read and search for
 * a directory), so nobody but root could pack or serve it; or this process cannot read it (the
 * runner and the agent may be different users). The bits are checked and not only access(),
 * because access() says yes to root whatever the mode.
 */
async function unreadable(full: string, st: Stats, needed: number, kind: string): Promise<string | undefined> {
  const why = `unreadable ${kind} (mode ${mode(st)})`;
  const anyone = [needed, needed >> 3, needed >> 6].some((bits) => (st.mode & bits) === bits);
  if (!anyone) return why;
  const ok = await access(full, constants.R_OK | (kind === 'directory' ? constants.X_OK : 0)).then(
    () => true,
    () => false,
  );
  return ok ? undefined : why;
}

interface Name {
  name: string;
  badName?: string;
}

/**
 * The `keep` smallest names of a directory, sorted, read in batches so that a directory with a
 * million entries costs memory for 2 * keep names, not a million. Names are read as latin1 (one
 * char per byte, lossless) and must be valid UTF-8: the packer and every tool after it handle
 * names as UTF-8 strings, and could not even open the file by a lossy name.
 */
async function smallestNames(dir: string, rel: string, keep: number, exclude: ((relPath: string) => boolean) | undefined): Promise<Name[]> {
  if (keep <= 0) return [];
  const names: Name[] = [];
  const byName = (a: Name, b: Name) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  for await (const dirent of await opendir(dir, { encoding: 'latin1', bufferSize: 128 })) {
    const bytes = Buffer.from(dirent.name, 'latin1');
    const name = bytes.toString('utf8');
    if (exclude?.(rel ? `${rel}/${name}` : name)) continue;
    names.push(Buffer.from(name, 'utf8').equals(bytes) ? { name } : { name, badName: 'file name is not valid UTF-8' });
    if (names.length >= 2 * keep + 1024) {
      names.sort(byName);
      names.length = keep;
    }
  }
  names.sort(byName);
  if (names.length > keep) names.length = keep;
  return names;
}
