/**
 * What a site tree may contain: one set of rules, three users, so that what one accepts the
 * others accept too (DESIGN "Security": outputs are checked with the same rules as unpack).
 *   - runner/archive.ts: unpacking an untrusted site artifact (before and while writing);
 *   - runner/output-check.ts: the agent's edited site, before the runner packs it;
 *   - storage/output-check.ts: a job's stored output.tar.gz, before storage publishes it.
 *
 * The rules, per entry: the path is relative, without NUL or `..` segments; the type is a
 * regular file, a directory, a symlink or a hard link (no devices, FIFOs, sockets or anything
 * else); a symlink's target is relative and has no `..` segment (a link may only point down
 * from its own directory, which keeps every chain of links inside the tree, so nothing written
 * "through" a link lands outside); a hard link names a regular file that came earlier in the
 * archive; a non-directory has no setuid/setgid bit. And for the whole tree: at most
 * `maxEntries` entries and `maxBytes` bytes of file content (the zip-bomb guard).
 *
 * setuid/setgid: refused in an output (the agent made it), stripped on unpack (a site artifact
 * comes from the site's owner, and unpack has always accepted and stripped them). Directories
 * are exempt: a directory's setgid bit grants nothing, and Kubernetes sets it on every directory
 * of an fsGroup volume such as the runner's work dir, so every output would carry it.
 *
 * Entry types use node-tar's names (File, Directory, SymbolicLink, Link, FIFO, ...); the
 * runner's tree walk maps lstat() results onto them.
 */
import { isAbsolute, posix } from 'node:path';

export interface ArchiveLimits {
  maxEntries: number;
  /** Total bytes of regular-file content (a hard link's content is counted once). */
  maxBytes: number;
}

/** The runner's unpack defaults (PAGEWRIGHT_MAX_ARCHIVE_ENTRIES, PAGEWRIGHT_MAX_UNPACKED_BYTES). */
export const DEFAULT_ARCHIVE_LIMITS: Readonly<ArchiveLimits> = { maxEntries: 5000, maxBytes: 512 * 1024 * 1024 };

export interface EntryHeader {
  path: string;
  /** node-tar's type name. */
  type: string;
  linkpath?: string | undefined;
  mode?: number | undefined;
  /** Content bytes (regular files). */
  size?: number | undefined;
}

/** Which rule an entry broke: stable, for callers that map it to their own error codes. */
export type ArchiveRule = 'UnsafePath' | 'ForbiddenType' | 'LinkEscapes' | 'SpecialBits' | 'TooManyEntries' | 'TooManyBytes';

export interface RuleViolation {
  rule: ArchiveRule;
  /** The entry's path as the archive or the tree has it. */
  path: string;
  /** Why, without the path. */
  why: string;
}

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
const ALLOWED_TYPES = new Set([...FILE_TYPES, 'Directory', 'SymbolicLink', 'Link']);

export function isRegularFileType(type: string): boolean {
  return FILE_TYPES.has(type);
}

/** `./a//b/` -> `a/b`; the root is `.`. Backslashes are separators too (see pathViolation). */
export function normalizeEntryPath(path: string): string {
  return (
    posix
      .normalize(path.replace(/\\/g, '/'))
      .replace(/^(\.\/)+/, '')
      .replace(/\/+$/, '') || '.'
  );
}

/** The path rules alone; returns why the path is unsafe, or null. */
function pathViolation(path: string): string | null {
  if (path.includes('\0')) return 'path contains a NUL byte';
  if (isAbsolute(path) || /^[a-zA-Z]:[\\/]/.test(path)) return 'absolute path';
  // backslashes count as separators: a Windows extractor (or a careless server) would use them
  if (path.split(/[\\/]+/).includes('..')) return 'path climbs out with ".."';
  return null;
}

function classify(entry: EntryHeader): Omit<RuleViolation, 'path'> | null {
  const pathWhy = pathViolation(entry.path);
  if (pathWhy) return { rule: 'UnsafePath', why: pathWhy };
  if (!ALLOWED_TYPES.has(entry.type)) {
    return { rule: 'ForbiddenType', why: `entry type ${entry.type} is not allowed (only files, directories and links)` };
  }
  const target = entry.linkpath ?? '';
  if (entry.type === 'SymbolicLink') {
    if (target === '') return { rule: 'LinkEscapes', why: 'symlink without a target' };
    if (target.includes('\0')) return { rule: 'LinkEscapes', why: 'symlink target contains a NUL byte' };
    if (isAbsolute(target) || /^[a-zA-Z]:[\\/]/.test(target))
      return { rule: 'LinkEscapes', why: `symlink to absolute path ${target} leaves the site` };
    if (target.split(/[\\/]+/).includes('..')) {
      return { rule: 'LinkEscapes', why: `symlink target ${target} climbs with ".." (links may only point down)` };
    }
  }
  if (entry.type === 'Link') {
    if (target === '' || isAbsolute(target)) return { rule: 'LinkEscapes', why: `hard link to ${target || 'nothing'} outside the archive` };
    if (target.split(/[\\/]+/).includes('..')) return { rule: 'LinkEscapes', why: `hard link target ${target} climbs with ".."` };
    if (normalizeEntryPath(target) === '.') return { rule: 'LinkEscapes', why: 'hard link to the archive root' };
  }
  return null;
}

/** Path, type and link rules of one entry, without context; returns why it is unsafe, or null. */
export function entryViolation(entry: EntryHeader): string | null {
  return classify(entry)?.why ?? null;
}

/** setuid/setgid on anything but a directory; returns why, or null. */
export function specialBitsViolation(type: string, mode: number | undefined): string | null {
  if (mode === undefined || type === 'Directory') return null;
  const bits = [mode & 0o4000 ? 'setuid' : '', mode & 0o2000 ? 'setgid' : ''].filter(Boolean);
  if (bits.length === 0) return null;
  return `${bits.join(' and ')} bit${bits.length > 1 ? 's' : ''} (mode ${(mode & 0o7777).toString(8).padStart(4, '0')})`;
}

export interface ArchiveRulesOptions {
  /** 'refuse' for outputs; 'allow' where the caller strips them (unpack). */
  specialBits: 'refuse' | 'allow';
}

/**
 * The rules over a sequence of entries, in archive order: the per-entry rules plus what needs
 * the entries before (hard-link targets, the limits). One instance per archive or tree.
 */
export class ArchiveRules {
  readonly limits: Readonly<ArchiveLimits>;
  readonly #opts: ArchiveRulesOptions;
  /** Regular files seen so far (normalised paths): what a later hard link may name. */
  readonly #files = new Set<string>();
  entries = 0;
  bytes = 0;

  constructor(limits: ArchiveLimits, opts: ArchiveRulesOptions) {
    this.limits = { maxEntries: limits.maxEntries, maxBytes: limits.maxBytes };
    this.#opts = opts;
  }

  /** Counts the entry and returns the first rule it breaks, or null. */
  check(entry: EntryHeader): RuleViolation | null {
    this.entries++;
    if (isRegularFileType(entry.type)) this.bytes += entry.size ?? 0;
    const broken = classify(entry);
    if (broken) return { ...broken, path: entry.path };
    if (entry.type === 'Link' && !this.#files.has(normalizeEntryPath(entry.linkpath ?? ''))) {
      return { rule: 'LinkEscapes', path: entry.path, why: `hard link to ${entry.linkpath}, which is not a file earlier in the archive` };
    }
    if (this.#opts.specialBits === 'refuse') {
      const bits = specialBitsViolation(entry.type, entry.mode);
      if (bits) return { rule: 'SpecialBits', path: entry.path, why: bits };
    }
    if (this.entries > this.limits.maxEntries) {
      return { rule: 'TooManyEntries', path: entry.path, why: `more than ${this.limits.maxEntries} entries` };
    }
    if (this.bytes > this.limits.maxBytes) {
      return { rule: 'TooManyBytes', path: entry.path, why: `more than ${this.limits.maxBytes} bytes` };
    }
    // only once accepted: a refused file must not become a valid hard-link target
    if (isRegularFileType(entry.type)) this.#files.add(normalizeEntryPath(entry.path));
    return null;
  }
}

/**
 * One line naming the entry and the rule, for UnsafeOutput messages: `"etc-link": symlink to
 * absolute path /etc leaves the site`, `more than 5000 entries (at "a/b/c")`. The path is
 * JSON-quoted (a file name may hold newlines) and cut at 200 characters.
 */
export function describeViolation(v: { rule: ArchiveRule | 'Unreadable'; path: string; why: string }): string {
  const path = JSON.stringify(v.path.length > 200 ? `${v.path.slice(0, 200)}...` : v.path);
  if (v.rule === 'TooManyEntries' || v.rule === 'TooManyBytes') return `${v.why} (at ${path})`;
  return `${path}: ${v.why}`;
}

/**
 * What an unpack answers for a broken rule, as a job's failure (runner/archive.ts) and as a
 * push's refusal (the review API checks a pushed site before storage keeps it): one code and
 * one message for both, so a push is refused for exactly what a job would fail on.
 */
export function unpackViolation(v: RuleViolation, limits: ArchiveLimits): { code: 'UnsafeArchive' | 'ArtifactTooLarge'; message: string } {
  if (v.rule === 'TooManyEntries') return { code: 'UnsafeArchive', message: `archive has more than ${limits.maxEntries} entries` };
  if (v.rule === 'TooManyBytes') return { code: 'ArtifactTooLarge', message: `archive unpacks to more than ${limits.maxBytes} bytes` };
  return { code: 'UnsafeArchive', message: `unsafe archive entry ${JSON.stringify(v.path.slice(0, 200))}: ${v.why}` };
}

/** The rules of an unpack: a site archive may carry setuid bits, which unpack strips (an output may not). */
export function unpackRules(limits: ArchiveLimits): ArchiveRules {
  return new ArchiveRules(limits, { specialBits: 'allow' });
}
