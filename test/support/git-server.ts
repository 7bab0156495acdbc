/**
 * A real git smart-HTTP server for tests: git's own `git http-backend` (the system git,
 * /usr/bin/git) run as a CGI program behind a minimal node:http (or node:https) server on
 * 127.0.0.1, port 0. The repos are bare repos on disk under `root` (GIT_PROJECT_ROOT).
 *
 * What the Node adapter does, and nothing more: it translates one HTTP request into one CGI
 * invocation of `git http-backend` and back.
 * - The CGI environment: GIT_PROJECT_ROOT, GIT_HTTP_EXPORT_ALL=1, PATH_INFO (the URL path,
 *   percent-decoded), QUERY_STRING, REQUEST_METHOD, CONTENT_TYPE and CONTENT_LENGTH when the
 *   request has them, REMOTE_ADDR, REMOTE_USER, HTTP_CONTENT_ENCODING (http-backend inflates a
 *   `Content-Encoding: gzip` body itself, which git sends for upload-pack requests), GIT_PROTOCOL
 *   from the `Git-Protocol` request header (protocol v2 is negotiated through it: http-backend
 *   does not read the header, a web server has to pass it, as git's documentation of
 *   http-backend shows for Apache), plus PATH, HOME (a temporary directory) and
 *   GIT_CONFIG_NOSYSTEM=1, so that the machine's git config does not apply.
 * - The request body is streamed into the CGI's stdin; the CGI's stdout is parsed for its
 *   header block (`Status:` and the other headers, up to the blank line) and the rest is
 *   streamed back as the response body. The child is killed if the client goes away first.
 * - Basic authentication, when `users` is given: every request needs valid credentials (401
 *   with `WWW-Authenticate: Basic` otherwise) and the user name becomes REMOTE_USER. Without
 *   `users`, REMOTE_USER is 'anonymous', because http-backend refuses a push from an
 *   unauthenticated client even when the repo sets http.receivepack=true.
 *
 * What it does not do: anything of the git protocol. Ref advertisement, protocol v2 commands,
 * pack negotiation, shallow fetches, receive-pack and the 403 for a disabled service all
 * come from git itself. The adapter does not read or rewrite bodies, nor cache, nor retry.
 *
 * commit() writes into a bare repo directly with git's plumbing (hash-object, update-index
 * with a temporary GIT_INDEX_FILE, write-tree, commit-tree, update-ref), not over HTTP, so that
 * a test can set up a repo, including symlinks (mode 120000) and gitlinks (mode 160000, the
 * entry a submodule makes), without a work tree.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';

/** A file of commit(): its content (mode 100644), a symlink, an executable or other mode, or a gitlink. */
type CommitFile = string | Buffer | { symlink: string } | { content: string | Buffer; mode: number } | { gitlink: string };

interface CommitOptions {
  /** Default `commit <n> files`. */
  message?: string;
  /** The parent is this branch's head instead of `branch`'s own (which it then replaces). */
  parentBranch?: string;
  /** Default true: the commit's tree is exactly `files`. False: `files` are laid over the parent's tree. */
  replace?: boolean;
}

interface GitServerRequest {
  method: string;
  /** Path and query, as sent. */
  url: string;
  /** The response status (0 while the CGI has not answered yet). */
  status: number;
  /** The Basic auth user the request carried, null if none. */
  user: string | null;
  /** The `Git-Protocol` request header (`version=2` for protocol v2), null if none. */
  gitProtocol: string | null;
}

export interface GitServer {
  /** e.g. http://127.0.0.1:PORT */
  origin: string;
  /** Absolute path of the directory holding bare repos (GIT_PROJECT_ROOT). */
  root: string;
  /** Creates a bare repo `<name>.git` under root (http.receivepack and uploadpack.allowFilter true, HEAD -> main), returns `${origin}/<name>.git`. */
  createRepo(name: string): Promise<string>;
  /**
   * Commits `files` onto `branch` of repo `name`, written into the bare repo on disk (not over
   * HTTP), and returns the new commit's sha. The parent is the branch's head if it exists (or
   * `parentBranch`'s). When HEAD names a branch that does not exist yet, HEAD is pointed at `branch`.
   */
  commit(name: string, branch: string, files: Record<string, CommitFile>, opts?: CommitOptions): Promise<string>;
  /** Every request the server saw, in arrival order. */
  requests: GitServerRequest[];
  close(): Promise<void>;
}

export interface GitServerOptions {
  /** Basic auth user -> password: when set, every request needs valid credentials. */
  users?: Record<string, string>;
  /** Serve https with this key and certificate (PEM contents). */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

/** A git command that exited non-zero (or was killed). */
export class GitCommandError extends Error {
  readonly code = 'GIT_COMMAND_FAILED';
  constructor(
    readonly args: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`git ${args.join(' ')} exited ${exitCode}: ${stderr.trim()}`);
    this.name = 'GitCommandError';
  }
}

/**
 * Runs the system git with a clean environment: PATH, GIT_CONFIG_NOSYSTEM=1,
 * GIT_CONFIG_GLOBAL=/dev/null, GIT_TERMINAL_PROMPT=0 and LC_ALL=C, then `opts.env` over them.
 * Throws GitCommandError on a non-zero exit.
 */
export async function git(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; input?: Buffer | string } = {},
): Promise<{ stdout: string; stderr: string }> {
  const child = spawn('git', args, {
    cwd: opts.cwd,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_TERMINAL_PROMPT: '0',
      LC_ALL: 'C',
      ...opts.env,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  // git may exit without reading all its input (e.g. on a usage error): not the failure to report
  child.stdin.on('error', () => undefined);
  child.stdin.end(opts.input);
  const [code] = (await once(child, 'close')) as [number | null];
  const result = { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
  if (code !== 0) throw new GitCommandError(args, code, result.stderr);
  return result;
}

const ZERO_SHA = '0'.repeat(40);
/** The most of a failing CGI's stderr kept for the 502 it turns into. */
const STDERR_LIMIT = 16 * 1024;

export async function startGitServer(opts: GitServerOptions = {}): Promise<GitServer> {
  const base = await mkdtemp(join(tmpdir(), 'git-server-'));
  const root = join(base, 'repos');
  const home = join(base, 'home');
  await mkdir(root);
  await mkdir(home);
  const requests: GitServerRequest[] = [];
  const children = new Set<ChildProcess>();
  const users = opts.users;
  const env = { HOME: home };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const rawUrl = req.url ?? '/';
    const user = basicUser(req.headers.authorization);
    const gitProtocol = header(req, 'git-protocol');
    const record: GitServerRequest = { method: req.method ?? 'GET', url: rawUrl, status: 0, user: user?.name ?? null, gitProtocol };
    requests.push(record);
    const reply = (status: number, headers: OutgoingHttpHeaders, body: string) => {
      record.status = status;
      res.writeHead(status, headers).end(body);
    };

    if (users && (!user || !Object.hasOwn(users, user.name) || users[user.name] !== user.password)) {
      reply(401, { 'WWW-Authenticate': 'Basic realm="git"', 'Content-Type': 'text/plain' }, 'authentication required\n');
      return;
    }
    const q = rawUrl.indexOf('?');
    let pathInfo: string;
    try {
      pathInfo = decodeURIComponent(q < 0 ? rawUrl : rawUrl.slice(0, q));
    } catch {
      reply(400, { 'Content-Type': 'text/plain' }, 'bad path encoding\n');
      return;
    }
    const cgiEnv: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      REQUEST_METHOD: record.method,
      PATH_INFO: pathInfo,
      QUERY_STRING: q < 0 ? '' : rawUrl.slice(q + 1),
      REMOTE_ADDR: req.socket.remoteAddress ?? '',
      REMOTE_USER: user?.name ?? 'anonymous',
    };
    const optional: Array<[string, string | null]> = [
      ['CONTENT_TYPE', header(req, 'content-type')],
      ['CONTENT_LENGTH', header(req, 'content-length')],
      ['HTTP_CONTENT_ENCODING', header(req, 'content-encoding')],
      ['GIT_PROTOCOL', gitProtocol],
    ];
    for (const [k, v] of optional) if (v !== null) cgiEnv[k] = v;

    const child = spawn('git', ['http-backend'], { env: cgiEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    child.once('close', () => children.delete(child));
    child.once('error', (e) => {
      if (!res.headersSent) reply(502, { 'Content-Type': 'text/plain' }, `git http-backend: ${e.message}\n`);
    });
    // a client that goes away first: the CGI's work is for nobody
    res.once('close', () => {
      if (!res.writableFinished && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });

    // http-backend may answer (e.g. 403) without reading the body: EPIPE on its stdin is not an error
    child.stdin.on('error', () => undefined);
    req.pipe(child.stdin);

    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      if (stderr.length < STDERR_LIMIT) stderr += c.toString('utf8');
    });

    let head: Buffer = Buffer.alloc(0);
    const onHead = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = headerEnd(head);
      if (!end) return;
      child.stdout.off('data', onHead);
      child.stdout.off('end', onEndBeforeHead);
      const { status, headers } = parseCgiHeaders(head.subarray(0, end.at).toString('latin1'));
      record.status = status;
      res.writeHead(status, headers);
      const rest = head.subarray(end.at + end.length);
      if (rest.length > 0) res.write(rest);
      child.stdout.pipe(res);
    };
    const onEndBeforeHead = () => {
      child.stdout.off('data', onHead);
      void once(child, 'close').then(([code]) => {
        if (!res.headersSent) reply(502, { 'Content-Type': 'text/plain' }, `git http-backend exited ${code} without a response\n${stderr}`);
      });
    };
    child.stdout.on('data', onHead);
    child.stdout.once('end', onEndBeforeHead);
  };

  const server = opts.tls ? createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : createHttpServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const origin = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;

  const repoDir = (name: string) => {
    if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(name) || name.split('/').some((s) => s === '.' || s === '..')) {
      throw new Error(`bad repo name ${JSON.stringify(name)}`);
    }
    return join(root, `${name.split('/').join(sep)}.git`);
  };

  const createRepo = async (name: string): Promise<string> => {
    const dir = repoDir(name);
    await mkdir(dir, { recursive: true });
    await git(['init', '--bare', '--quiet', '--initial-branch=main', dir], { env });
    await git(['config', 'http.receivepack', 'true'], { cwd: dir, env });
    // partial fetches (--filter=blob:none), as GitHub and GitLab serve them
    await git(['config', 'uploadpack.allowFilter', 'true'], { cwd: dir, env });
    return `${origin}/${name}.git`;
  };

  const commit = async (name: string, branch: string, files: Record<string, CommitFile>, copts: CommitOptions = {}): Promise<string> => {
    const dir = repoDir(name);
    const ref = `refs/heads/${branch}`;
    const run = (args: string[], input?: Buffer | string, extra: Record<string, string> = {}) =>
      git(args, { cwd: dir, env: { ...env, ...extra }, input }).then((r) => r.stdout.trim());
    const resolve = (r: string) => run(['rev-parse', '--verify', '--quiet', `${r}^{commit}`]).catch(() => null);

    const current = await resolve(ref);
    const parent = copts.parentBranch === undefined ? current : await resolve(`refs/heads/${copts.parentBranch}`);
    if (copts.parentBranch !== undefined && parent === null) throw new Error(`no branch ${copts.parentBranch} in ${name}`);

    const entries: string[] = [];
    for (const [path, file] of Object.entries(files)) {
      const [mode, sha] = await entryOf(file, (content) => run(['hash-object', '-w', '--stdin'], content));
      entries.push(`${mode} ${sha}\t${path}\0`);
    }
    const scratch = await mkdtemp(join(tmpdir(), 'git-server-index-'));
    try {
      const indexEnv = { GIT_INDEX_FILE: join(scratch, 'index') };
      if (parent !== null && copts.replace === false) await run(['read-tree', parent], undefined, indexEnv);
      if (entries.length > 0) await run(['update-index', '--add', '-z', '--index-info'], entries.join(''), indexEnv);
      const tree = await run(['write-tree'], undefined, indexEnv);
      const message = copts.message ?? `commit ${Object.keys(files).length} files`;
      const sha = await run([
        '-c',
        'user.name=test',
        '-c',
        'user.email=test@example.com',
        'commit-tree',
        tree,
        ...(parent === null ? [] : ['-p', parent]),
        '-m',
        message,
      ]);
      await run(['update-ref', ref, sha, current ?? ZERO_SHA]);
      const head = await run(['symbolic-ref', 'HEAD']).catch(() => null);
      if (head !== null && (await resolve(head)) === null) await run(['symbolic-ref', 'HEAD', ref]);
      return sha;
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  };

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      const closed = once(server, 'close');
      server.close();
      server.closeAllConnections();
      const exits = [...children].map((c) => (c.exitCode === null && c.signalCode === null ? once(c, 'close') : null));
      for (const c of children) c.kill('SIGKILL');
      await Promise.all([closed, ...exits]);
      await rm(base, { recursive: true, force: true });
    })();
    return closing;
  };

  return { origin, root, createRepo, commit, requests, close };
}

/** The tree entry mode and object sha of one commit() file; `store` writes a blob and returns its sha. */
async function entryOf(file: CommitFile, store: (content: Buffer | string) => Promise<string>): Promise<[string, string]> {
  if (typeof file === 'string' || Buffer.isBuffer(file)) return ['100644', await store(file)];
  if ('symlink' in file) return ['120000', await store(file.symlink)];
  if ('gitlink' in file) {
    if (!/^[0-9a-f]{40}$/.test(file.gitlink)) throw new Error(`a gitlink needs a 40-hex sha, not ${JSON.stringify(file.gitlink)}`);
    return ['160000', file.gitlink];
  }
  // git records only 100755 and 100644 for a regular file
  return [file.mode & 0o111 ? '100755' : '100644', await store(file.content)];
}

function header(req: IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  if (v === undefined) return null;
  return Array.isArray(v) ? v.join(', ') : v;
}

function basicUser(authorization: string | undefined): { name: string; password: string } | null {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization ?? '');
  if (!m) return null;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return { name: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Where the CGI header block ends: the first blank line (CRLF or LF line ends). */
function headerEnd(buf: Buffer): { at: number; length: number } | null {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { at: crlf, length: 4 };
  if (lf >= 0) return { at: lf, length: 2 };
  return null;
}

/** A CGI header block: `Status: 404 Not Found` becomes the status (default 200), the rest are response headers. */
function parseCgiHeaders(block: string): { status: number; headers: OutgoingHttpHeaders } {
  let status = 200;
  const headers: Record<string, string | string[]> = {};
  for (const line of block.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') {
      status = Number.parseInt(value, 10) || 500;
      continue;
    }
    const prior = headers[name];
    headers[name] = prior === undefined ? value : [...(Array.isArray(prior) ? prior : [prior]), value];
  }
  return { status, headers };
}
