/**
 * The manager's git: a site's tree imported from a repository (spec.source.git) and a site's
 * version committed and pushed to one (a publish target). git itself does the work (Debian's
 * git in the manager image: fetch, archive, fast-import, push; nothing of its protocol is
 * re-implemented), run so that a hostile repository or URL gets nothing from it:
 *
 *   - where it connects: the URL is decided by git-remote.ts, the host resolved here and every
 *     address judged by url-policy.ts, and git is pinned to those addresses
 *     (`http.curloptResolve`, so DNS cannot re-bind between the check and the connect), follows
 *     no redirect (a redirect could point anywhere), and may only speak the URL's own transport
 *     (GIT_ALLOW_PROTOCOL; `protocol.allow=never` for everything else: no file://, ext::);
 *   - what it reads of this pod: no system or global config, a fresh empty HOME, no credential
 *     helper and no prompt; the only credentials are the site's Secret's, sent as one
 *     Authorization header to that pinned host (in the environment, never on a command line);
 *   - what the repository can make it do: the bare repository is created with an empty
 *     template and `core.hooksPath=/dev/null` (no hook runs, whatever the repository holds),
 *     nothing is checked out (the tree is read with ls-tree and archive, so a link never touches
 *     this disk), submodules are never fetched, and every object fetched is checked
 *     (`fetch.fsckObjects`: git's own refusal of `.git` paths, `..` and malformed trees);
 *   - how much: a depth-1 fetch (an ever-growing history costs one commit), the repository's
 *     bytes watched while git fetches and the fetch killed past `maxFetchBytes`, the tree's sizes
 *     read before anything is packed, and a deadline on every git command.
 * A tree becomes a site archive only through the same rules as a push (common/archive-rules.ts):
 * a link leaving the tree, a submodule, too many entries or bytes are refused with the path and
 * the reason (UnsafeSource).
 *
 * Publishing builds the commit with `git fast-import` from the version's archive (one process
 * for the whole tree, whatever its size), on top of the branch's tip as fetched, and pushes it
 * without force: a branch that moved meanwhile, or was never ours to fast-forward, is a
 * PublishConflict.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { PassThrough, type Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { type ArchiveLimits, unpackRules, unpackViolation } from '../../common/archive-rules.js';
import { ArchiveFormatError, feedTar, scanArchive } from '../../common/archive-scan.js';
import { type CodeSubset, PagewrightError } from '../../common/errors.js';
import { type Resolver, systemResolver, vetHost } from '../webhooks/delivery.js';
import type { UrlPolicy } from '../webhooks/url-policy.js';
import { checkGitUrl } from './git-remote.js';

export type GitErrorCode = CodeSubset<
  'SourceNotAllowed' | 'SourceUnavailable' | 'UnsafeSource' | 'TargetNotAllowed' | 'TargetUnavailable' | 'PublishConflict'
>;

export class GitError extends PagewrightError<GitErrorCode> {
  constructor(code: GitErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'GitError';
  }
}

/** From the site's credentials Secret (keys `username` and `password`; a token goes in `password`). */
export interface GitAuth {
  username: string;
  password: string;
}

export interface GitClientOptions {
  policy: UrlPolicy;
  resolve?: Resolver;
  /** Where repositories and archives are made (removed after each call). */
  scratchDir: string;
  /** One git command's deadline. */
  timeoutMs: number;
  /** The most a fetch may bring (the repository's size on disk while git writes it). */
  maxFetchBytes: number;
  /** A tree's entries and bytes (the runner's unpack limits: what a job could unpack). */
  limits: ArchiveLimits;
  /** PEM bundle git trusts instead of the system's (a private git server). */
  caFile?: string;
  gitBinary?: string;
}

export interface ImportedTree {
  commit: string;
  /** A tar.gz of the tree, checked by the unpack rules. */
  archivePath: string;
  sha256: string;
  size: number;
  /** Removes the archive and its scratch directory. */
  dispose(): Promise<void>;
}

export interface PublishRequest {
  url: string;
  branch: string;
  /** The site goes into this directory of the repository (the rest kept); default: the whole tree is the site. */
  path?: string;
  auth?: GitAuth;
  author: { name: string; email: string };
  /** The version's tar.gz (already checked by storage). */
  archivePath: string;
  message: string;
  /** Told the tip's message: true when the tip already is this change (a retry after a push whose answer was lost). */
  alreadyPushed?: (tipMessage: string) => boolean | Promise<boolean>;
  signal?: AbortSignal;
}

const BRANCH = /^(?!.*\.\.)(?!.*\/\/)(?!.*@\{)(?![./-])[A-Za-z0-9._/-]{1,200}(?<![./]|\.lock)$/;

function checkRef(ref: string): void {
  if (!/^[A-Za-z0-9._/-]{1,200}$/.test(ref) || ref.startsWith('-') || ref.includes('..')) {
    throw new GitError('SourceUnavailable', `ref ${JSON.stringify(ref)} is not a branch, tag or commit name`);
  }
}

/** `a/b` inside a repository: relative, normalised, no `..`, no `.git`. */
export function checkRepoPath(path: string | undefined): string | null {
  if (path === undefined || path === '' || path === '.' || path === '/') return null;
  const trimmed = path.replace(/^\/+|\/+$/g, '');
  const normal = posix.normalize(trimmed);
  if (normal !== trimmed || normal.startsWith('..') || normal.split('/').some((p) => p === '..' || p.toLowerCase() === '.git')) {
    throw new GitError('UnsafeSource', `path ${JSON.stringify(path)} must be a plain relative directory (no "..", ".git" or "//")`);
  }
  return normal;
}

export class GitClient {
  readonly #o: GitClientOptions;
  readonly #resolve: Resolver;

  constructor(opts: GitClientOptions) {
    this.#o = opts;
    this.#resolve = opts.resolve ?? systemResolver;
  }

  /**
   * The commit `ref` names on the server now (ls-remote: no fetch), so an unchanged source costs
   * one round trip. A branch first, then a tag (peeled), then the ref as a full name; a commit id
   * is itself.
   */
  async resolveRef(req: { url: string; ref: string; auth?: GitAuth; signal?: AbortSignal }): Promise<string> {
    checkRef(req.ref);
    if (/^[0-9a-f]{40}$/.test(req.ref)) return req.ref;
    const dir = await mkdtemp(join(this.#o.scratchDir, 'ls-remote-'));
    let out: string;
    try {
      const session = await this.#session(req.url, req.auth, 'source', dir);
      out = await session.git(['ls-remote', '--', session.url, req.ref, `${req.ref}^{}`], req.signal ? { signal: req.signal } : {});
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const refs = new Map(
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => [l.slice(41), l.slice(0, 40)] as const),
    );
    const found =
      refs.get(`refs/heads/${req.ref}`) ?? refs.get(`refs/tags/${req.ref}^{}`) ?? refs.get(`refs/tags/${req.ref}`) ?? refs.get(req.ref);
    if (!found) throw new GitError('SourceUnavailable', `no branch or tag ${JSON.stringify(req.ref)} on the server`);
    return found;
  }

  /** The tree at `ref` (a branch, a tag or a commit id), as a checked site archive. */
  async importTree(req: { url: string; ref: string; path?: string; auth?: GitAuth; signal?: AbortSignal }): Promise<ImportedTree> {
    checkRef(req.ref);
    const sub = checkRepoPath(req.path);
    const dir = await mkdtemp(join(this.#o.scratchDir, 'import-'));
    const dispose = () => rm(dir, { recursive: true, force: true });
    try {
      const session = await this.#session(req.url, req.auth, 'source', dir);
      const repo = join(dir, 'repo.git');
      await session.git(['init', '--bare', '--quiet', '--template=', repo]);
      await session.fetch(repo, req.ref, req.signal);
      const commit = (await session.git(['-C', repo, 'rev-parse', '--verify', 'FETCH_HEAD^{commit}'])).trim();
      const treeish = sub ? `${commit}:${sub}` : commit;
      const kind = (await session.git(['-C', repo, 'cat-file', '-t', sub ? treeish : `${commit}^{tree}`], { allowFailure: true })).trim();
      if (kind !== 'tree') throw new GitError('UnsafeSource', `${sub ?? '/'} is not a directory at ${commit.slice(0, 12)}`);
      await this.#checkTree(session, repo, treeish);
      const archivePath = join(dir, 'site.tar.gz');
      const { sha256, size } = await session.archive(repo, treeish, archivePath);
      await checkArchive(archivePath, this.#o.limits);
      return { commit, archivePath, sha256, size, dispose };
    } catch (err) {
      await dispose();
      throw err;
    }
  }

  /** Commits the version onto the branch and pushes it (fast-forward only). */
  async publish(req: PublishRequest): Promise<{ commit: string; pushed: boolean }> {
    if (!BRANCH.test(req.branch)) throw new GitError('TargetNotAllowed', `branch ${JSON.stringify(req.branch)} is not a valid branch name`);
    const sub = checkRepoPath(req.path);
    const dir = await mkdtemp(join(this.#o.scratchDir, 'publish-'));
    try {
      const session = await this.#session(req.url, req.auth, 'target', dir);
      const repo = join(dir, 'repo.git');
      await session.git(['init', '--bare', '--quiet', '--template=', repo]);
      // the tip's commit and trees, not its files (a partial fetch: fast-import needs the parent's
      // tree, never its blobs); a server without filters sends them anyway, which is only slower
      const tip = await session.fetchTip(repo, req.branch, req.signal);
      if (tip) {
        const message = await session.git(['-C', repo, 'log', '-1', '--format=%B', tip]);
        if (await req.alreadyPushed?.(message)) return { commit: tip, pushed: false };
      }
      const ref = 'refs/pagewright/export';
      await session.fastImport(repo, { ref, parent: tip, sub, ...req });
      const commit = (await session.git(['-C', repo, 'rev-parse', '--verify', ref])).trim();
      await session.push(repo, commit, req.branch, req.signal);
      return { commit, pushed: true };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Refuses a tree before packing it: submodules, and sizes read from the tree itself. */
  async #checkTree(session: GitSession, repo: string, treeish: string): Promise<void> {
    const listing = await session.git(['-C', repo, 'ls-tree', '-r', '-l', '-z', '--full-tree', treeish]);
    const { maxEntries, maxBytes } = this.#o.limits;
    let entries = 0;
    let bytes = 0;
    for (const line of listing.split('\0')) {
      if (line === '') continue;
      const tab = line.indexOf('\t');
      const [mode, type, , size] = line.slice(0, tab).split(/ +/);
      const path = line.slice(tab + 1);
      if (mode === '160000' || type === 'commit') {
        throw new GitError(
          'UnsafeSource',
          `${JSON.stringify(path)} is a submodule: its content lives in another repository, which Pagewright does not fetch`,
        );
      }
      entries++;
      bytes += Number(size) || 0;
      if (entries > maxEntries)
        throw new GitError('UnsafeSource', `the tree has more than ${maxEntries} files (a site may have at most that many)`);
      if (bytes > maxBytes)
        throw new GitError('UnsafeSource', `the tree holds more than ${maxBytes} bytes (at ${JSON.stringify(path)}, ${size} bytes)`);
    }
  }

  /** Checks and pins the URL; git's HOME is made inside `scratch` (the caller removes it). */
  async #session(raw: string, auth: GitAuth | undefined, side: 'source' | 'target', scratch: string): Promise<GitSession> {
    const notAllowed = side === 'source' ? 'SourceNotAllowed' : 'TargetNotAllowed';
    const unavailable = side === 'source' ? 'SourceUnavailable' : 'TargetUnavailable';
    const decided = checkGitUrl(raw, this.#o.policy);
    if (!decided.allowed) throw new GitError(notAllowed, `${raw}: ${decided.message}`);
    const vetted = await vetHost(decided, this.#o.policy, this.#resolve);
    if (!vetted.ok) throw new GitError(vetted.code === 'DnsFailed' ? unavailable : notAllowed, vetted.message);
    const { addresses } = vetted;
    const url = decided.url;
    const port = url.port || (url.protocol === 'https:' ? '443' : '80');
    const pinned = addresses.map((a) => (a.family === 6 ? `[${a.address}]` : a.address)).join(',');
    const config: Array<[string, string]> = [
      ['protocol.allow', 'never'],
      [`protocol.${url.protocol.slice(0, -1)}.allow`, 'always'],
      ['http.followRedirects', 'false'],
      ['http.curloptResolve', `${decided.host}:${port}:${pinned}`],
      ['credential.helper', ''],
      ['core.hooksPath', '/dev/null'],
      ['core.askPass', ''],
      ['fetch.fsckObjects', 'true'],
      ['transfer.fsckObjects', 'true'],
      ['fetch.recurseSubmodules', 'false'],
      ['submodule.recurse', 'false'],
      ['gc.auto', '0'],
      ['maintenance.auto', 'false'],
      ['http.lowSpeedLimit', '1024'],
      ['http.lowSpeedTime', '30'],
      ['init.defaultBranch', 'main'],
    ];
    if (this.#o.caFile) config.push(['http.sslCAInfo', this.#o.caFile]);
    if (auth) {
      const basic = Buffer.from(`${auth.username}:${auth.password}`).toString('base64');
      config.push(['http.extraHeader', `Authorization: Basic ${basic}`]);
    }
    const home = join(scratch, 'home');
    await mkdir(home, { recursive: true });
    return new GitSession({
      binary: this.#o.gitBinary ?? 'git',
      url: url.href,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: home,
        LC_ALL: 'C',
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_CONFIG_GLOBAL: '/dev/null',
        GIT_TERMINAL_PROMPT: '0',
        GIT_ALLOW_PROTOCOL: url.protocol.slice(0, -1),
        GIT_CONFIG_COUNT: String(config.length),
        ...Object.fromEntries(
          config.flatMap(([k, v], i) => [
            [`GIT_CONFIG_KEY_${i}`, k],
            [`GIT_CONFIG_VALUE_${i}`, v],
          ]),
        ),
      },
      timeoutMs: this.#o.timeoutMs,
      maxFetchBytes: this.#o.maxFetchBytes,
      unavailable,
      home,
    });
  }
}

/** A checked tree's archive read through the unpack rules: what a job could not unpack is refused here. */
async function checkArchive(path: string, limits: ArchiveLimits): Promise<void> {
  let violation: Awaited<ReturnType<typeof scanArchive>>;
  try {
    violation = await scanArchive(createReadStream(path), unpackRules(limits));
  } catch (err) {
    if (err instanceof ArchiveFormatError) throw new GitError('UnsafeSource', `git archive made an unreadable archive: ${err.message}`);
    throw err;
  }
  if (violation) throw new GitError('UnsafeSource', unpackViolation(violation, limits).message);
}

interface SessionSettings {
  binary: string;
  url: string;
  env: Record<string, string>;
  timeoutMs: number;
  maxFetchBytes: number;
  unavailable: 'SourceUnavailable' | 'TargetUnavailable';
  home: string;
}

interface RunOptions {
  allowFailure?: boolean;
  signal?: AbortSignal;
  stdin?: Readable;
  stdout?: Writable;
  /** Called every 250 ms while git runs; returning a message kills git and fails with it. */
  watch?: () => Promise<string | null>;
}

/** git commands against one checked, pinned URL. */
class GitSession {
  readonly url: string;
  readonly #s: SessionSettings;

  constructor(s: SessionSettings) {
    this.#s = s;
    this.url = s.url;
  }

  /** A depth-1 fetch of `what`, killed if the repository grows past maxFetchBytes. */
  async fetch(repo: string, what: string, signal?: AbortSignal): Promise<void> {
    await this.#cappedFetch(repo, ['--', this.url, what], signal);
  }

  /**
   * The branch's tip, fetched at depth 1 without blobs (remote `origin` as a promisor, which
   * partial fetches need), or null when the branch does not exist yet.
   */
  async fetchTip(repo: string, branch: string, signal?: AbortSignal): Promise<string | null> {
    await this.git(['-C', repo, 'config', 'remote.origin.url', this.url]);
    await this.git(['-C', repo, 'config', 'remote.origin.promisor', 'true']);
    await this.git(['-C', repo, 'config', 'remote.origin.partialclonefilter', 'blob:none']);
    try {
      await this.#cappedFetch(repo, ['--filter=blob:none', 'origin', `refs/heads/${branch}`], signal);
    } catch (err) {
      if (err instanceof GitError && /no such ref/.test(err.message)) return null;
      throw err;
    }
    return (await this.git(['-C', repo, 'rev-parse', '--verify', 'FETCH_HEAD^{commit}'])).trim();
  }

  /**
   * `git fetch --depth=1` with the repository's bytes watched while git writes them, git killed
   * past maxFetchBytes, and the size checked once more at the end (a fetch quicker than the
   * watch's first look is measured too). Too large: UnsafeSource for a source, the target's
   * TargetUnavailable for a target.
   */
  async #cappedFetch(repo: string, args: string[], signal?: AbortSignal): Promise<void> {
    const max = this.#s.maxFetchBytes;
    const tooLarge = `the repository is larger than ${max} bytes at depth 1`;
    const code = this.#s.unavailable === 'SourceUnavailable' ? 'UnsafeSource' : 'TargetUnavailable';
    await this.git(['-C', repo, 'fetch', '--quiet', '--depth=1', '--no-tags', ...args], {
      ...(signal ? { signal } : {}),
      watch: async () => ((await treeBytes(repo)) > max ? tooLarge : null),
    }).catch((err: unknown) => {
      if (err instanceof GitError && err.message === tooLarge) throw new GitError(code, tooLarge);
      throw err;
    });
    if ((await treeBytes(repo)) > max) throw new GitError(code, tooLarge);
  }

  /** `git archive` of a tree, gzipped into `out`, hashed. */
  async archive(repo: string, treeish: string, out: string): Promise<{ sha256: string; size: number }> {
    const hash = createHash('sha256');
    let size = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _e, done) {
        hash.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    const gzip = createGzip();
    await Promise.all([
      pipeline(gzip, tap, createWriteStream(out)),
      this.git(['-C', repo, 'archive', '--format=tar', treeish], { stdout: gzip }),
    ]);
    return { sha256: hash.digest('hex'), size };
  }

  /** One commit whose tree is the archive's (under `sub` when set, the rest of the parent's kept). */
  async fastImport(
    repo: string,
    c: {
      ref: string;
      parent: string | null;
      sub: string | null;
      archivePath: string;
      author: { name: string; email: string };
      message: string;
    },
  ): Promise<void> {
    const script = new PassThrough();
    const running = this.git(['-C', repo, 'fast-import', '--quiet', '--done'], { stdin: script });
    const now = Math.floor(Date.now() / 1000);
    const ident = `${identPart(c.author.name)} <${identPart(c.author.email)}> ${now} +0000`;
    const message = Buffer.from(c.message.endsWith('\n') ? c.message : `${c.message}\n`);
    const write = (chunk: string | Buffer) => (script.write(chunk) ? Promise.resolve() : new Promise<void>((r) => script.once('drain', r)));
    const feeding = (async () => {
      await write(`commit ${c.ref}\nauthor ${ident}\ncommitter ${ident}\ndata ${message.length}\n`);
      await write(message);
      await write('\n');
      if (c.parent) await write(`from ${c.parent}\n`);
      const prefix = c.sub ? `${c.sub}/` : '';
      await write(c.sub ? `D ${quotePath(c.sub)}\n` : 'deleteall\n');
      await streamEntries(c.archivePath, async (entry, body) => {
        const path = `${prefix}${entry.path.replace(/^\.\//, '').replace(/\/$/, '')}`;
        if (entry.type === 'Directory' || path === prefix.slice(0, -1) || path === '') return;
        if (entry.type === 'Link')
          return write(`C ${quotePath(`${prefix}${(entry.linkpath ?? '').replace(/^\.\//, '')}`)} ${quotePath(path)}\n`);
        if (entry.type === 'SymbolicLink') {
          const target = Buffer.from(entry.linkpath ?? '');
          await write(`M 120000 inline ${quotePath(path)}\ndata ${target.length}\n`);
          await write(target);
          return write('\n');
        }
        const mode = (entry.mode ?? 0o644) & 0o111 ? '100755' : '100644';
        await write(`M ${mode} inline ${quotePath(path)}\ndata ${entry.size ?? 0}\n`);
        for await (const chunk of body) await write(chunk as Buffer);
        await write('\n');
      });
      await write('done\n');
      script.end();
    })();
    feeding.catch(() => script.destroy());
    await Promise.all([running, feeding]);
  }

  async push(repo: string, commit: string, branch: string, signal?: AbortSignal): Promise<void> {
    const out = await this.git(['-C', repo, 'push', '--porcelain', '--', this.url, `${commit}:refs/heads/${branch}`], {
      allowFailure: true,
      ...(signal ? { signal } : {}),
    });
    const status = out.split('\n').find((l) => l.includes(`refs/heads/${branch}`));
    if (status?.startsWith('*') || status?.startsWith(' ') || status?.startsWith('=')) return;
    if (status?.startsWith('!') && /non-fast-forward|fetch first|stale info|already exists/.test(status)) {
      throw new GitError(
        'PublishConflict',
        `${branch} moved on since it was fetched; Pagewright never force-pushes (${status.split('\t').pop()})`,
      );
    }
    throw new GitError(this.#s.unavailable, `push to ${branch} failed: ${(status ?? out).trim().slice(0, 500) || 'no answer'}`);
  }

  /** Runs git; resolves with stdout (when not piped), throws GitError with stderr's gist. */
  git(args: string[], o: RunOptions = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.#s.binary, args, { env: this.#s.env, stdio: [o.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      let err = '';
      let failure: GitError | null = null;
      const kill = (why: GitError) => {
        failure ??= why;
        child.kill('SIGKILL');
      };
      const verb = args[0] === '-C' ? args[2] : args[0];
      const timer = setTimeout(
        () => kill(new GitError(this.#s.unavailable, `git ${verb} took longer than ${this.#s.timeoutMs} ms`)),
        this.#s.timeoutMs,
      );
      const onAbort = () => kill(new GitError(this.#s.unavailable, 'cancelled'));
      o.signal?.addEventListener('abort', onAbort, { once: true });
      const watcher = o.watch
        ? setInterval(() => {
            void o.watch?.().then(
              (m) => m && kill(new GitError(this.#s.unavailable, m)),
              () => undefined,
            );
          }, 250)
        : null;
      if (o.stdin && child.stdin) {
        o.stdin.pipe(child.stdin);
        child.stdin.on('error', () => undefined);
      }
      if (o.stdout) child.stdout?.pipe(o.stdout);
      else child.stdout?.on('data', (c: Buffer) => out.push(c));
      child.stderr?.on('data', (c: Buffer) => {
        if (err.length < 16_384) err += c.toString('utf8');
      });
      child.on('error', (e) => kill(new GitError(this.#s.unavailable, `cannot run git: ${e.message}`)));
      child.on('close', (code) => {
        clearTimeout(timer);
        if (watcher) clearInterval(watcher);
        o.signal?.removeEventListener('abort', onAbort);
        if (failure) return reject(failure);
        if (code !== 0 && !o.allowFailure) return reject(this.#classify(err));
        resolve(Buffer.concat(out).toString('utf8'));
      });
    });
  }

  /** git's stderr (LC_ALL=C) as a stable code and a message that names the cause without the credentials. */
  #classify(stderr: string): GitError {
    const text = stderr.replaceAll(/Basic [A-Za-z0-9+/=]+/g, 'Basic ***').trim();
    const gist = (text.split('\n').find((l) => l.startsWith('fatal:') || l.startsWith('error:')) ?? text.split('\n')[0] ?? 'failed').slice(
      0,
      500,
    );
    if (/fsck|badTree|hasDot|hasDotgit|zeroPaddedFilemode|gitmodules|invalid object|did not pass|unable to parse/i.test(text)) {
      return new GitError('UnsafeSource', `the repository's objects fail git's checks: ${gist}`);
    }
    if (/returned error: 3\d\d|redirect/i.test(text))
      return new GitError(this.#s.unavailable, `the server redirects (not followed): ${gist}`);
    if (/returned error: 40[13]|Authentication failed|could not read Username/i.test(text)) {
      return new GitError(this.#s.unavailable, `the server refused the credentials (check the site's credentials Secret): ${gist}`);
    }
    if (/couldn't find remote ref|not our ref|no such ref|unadvertised object/i.test(text)) {
      return new GitError(this.#s.unavailable, `no such ref on the server: ${gist}`);
    }
    return new GitError(this.#s.unavailable, gist);
  }
}

/** Bytes under a directory (the fetch watcher): files only, links not followed. */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  let names: Array<import('node:fs').Dirent>;
  try {
    names = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const d of names) {
    const p = join(dir, d.name);
    if (d.isDirectory()) total += await treeBytes(p);
    else if (d.isFile())
      total += await stat(p).then(
        (s) => s.size,
        () => 0,
      );
  }
  return total;
}

/** A name or an e-mail in an ident line: fast-import refuses `<`, `>` and newlines there. */
function identPart(text: string): string {
  return (
    text
      .replace(/[<>\n\r\0]/g, '')
      .trim()
      .slice(0, 200) || 'Pagewright'
  );
}

/** fast-import's C-style quoted path (always quoted, so no path can be read as a command); non-ASCII stays as is (written as UTF-8). */
export function quotePath(path: string): string {
  let out = '"';
  for (const ch of path) {
    const code = ch.charCodeAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (code < 0x20 || code === 0x7f) out += `\\${code.toString(8).padStart(3, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** Each entry of a tar.gz, in order, with its body (drained when the callback did not read it). */
async function streamEntries(path: string, each: (entry: ReadEntry, body: ReadEntry) => Promise<void>): Promise<void> {
  let chain = Promise.resolve();
  let failed: unknown = null;
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry) => {
      entry.pause();
      chain = chain.then(async () => {
        if (failed) return entry.resume();
        try {
          await each(entry, entry);
        } catch (err) {
          failed = err;
        }
        entry.resume();
      });
    },
  });
  await feedTar(createReadStream(path), parser);
  await chain;
  if (failed) throw failed;
}
