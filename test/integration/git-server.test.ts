/**
 * test/support/git-server.ts is a real git smart-HTTP server: the system git's client clones,
 * fetches (shallow, protocol v2) and pushes through it, Basic auth is enforced, https works with
 * a certificate from the test CA, and commit() writes the trees it is asked for (symlinks,
 * gitlinks, executables, layered or replacing commits) straight into the bare repos.
 *
 * Every git client here runs with HOME in a temporary directory and GIT_CONFIG_NOSYSTEM=1, so
 * that this machine's git config cannot change what it does.
 */
import { mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { GitCommandError, type GitServer, git, startGitServer } from '../support/git-server.js';
import { Pki } from '../support/pki.js';

describe('git smart-HTTP test server (git http-backend behind node:http)', function () {
  this.timeout(60_000);
  let scratch: string;
  let home: string;
  let server: GitServer;

  const client = (extra: Record<string, string> = {}) => ({ HOME: home, GIT_CONFIG_NOSYSTEM: '1', ...extra });
  const basicHeader = (user: string, password: string) => ({
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'http.extraHeader',
    GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
  });
  const out = async (args: string[], opts: Parameters<typeof git>[1] = {}) => (await git(args, opts)).stdout.trim();
  const lsTree = async (cwd: string, rev = 'HEAD') =>
    (await out(['ls-tree', '-r', rev], { cwd, env: client() })).split('\n').map((l) => {
      const [meta, path] = l.split('\t');
      const [mode, type, sha] = meta!.split(' ');
      return { mode, type, sha, path };
    });
  const ofRepo = (s: GitServer, name: string) => s.requests.filter((r) => r.url.startsWith(`/${name}.git/`));

  beforeEach(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'git-server-test-'));
    home = await mkdtemp(join(scratch, 'home-'));
    server = await startGitServer();
  });
  afterEach(async () => {
    await server.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it('git clone over HTTP gets the files commit() wrote', async () => {
    const url = await server.createRepo('site');
    const sha = await server.commit('site', 'main', {
      'index.html': '<h1>hello</h1>\n',
      'assets/logo.bin': Buffer.from([0, 1, 2, 255]),
      'bin/build.sh': { content: '#!/bin/sh\necho ok\n', mode: 0o755 },
    });
    expect(url).to.equal(`${server.origin}/site.git`);

    const dir = join(scratch, 'clone');
    await git(['clone', '--quiet', url, dir], { env: client() });

    expect(await out(['rev-parse', 'HEAD'], { cwd: dir, env: client() })).to.equal(sha);
    expect(await out(['symbolic-ref', 'HEAD'], { cwd: dir, env: client() })).to.equal('refs/heads/main');
    expect(await readFile(join(dir, 'index.html'), 'utf8')).to.equal('<h1>hello</h1>\n');
    expect([...(await readFile(join(dir, 'assets/logo.bin')))]).to.deep.equal([0, 1, 2, 255]);
    expect((await stat(join(dir, 'bin/build.sh'))).mode & 0o111).to.not.equal(0);
    const seen = ofRepo(server, 'site').map((r) => `${r.method} ${r.url} ${r.status}`);
    expect(seen).to.include('GET /site.git/info/refs?service=git-upload-pack 200');
    expect(seen).to.include('POST /site.git/git-upload-pack 200');
  });

  it('git push over HTTP lands the new commit in the bare repo', async () => {
    const url = await server.createRepo('site');
    const base = await server.commit('site', 'main', { 'index.html': 'v1\n' });
    const dir = join(scratch, 'clone');
    await git(['clone', '--quiet', url, dir], { env: client() });
    await writeFile(join(dir, 'index.html'), 'v2\n');
    await git(['-c', 'user.name=dev', '-c', 'user.email=dev@example.com', 'commit', '--quiet', '-am', 'v2'], { cwd: dir, env: client() });
    const pushed = await out(['rev-parse', 'HEAD'], { cwd: dir, env: client() });

    await git(['push', '--quiet', 'origin', 'main'], { cwd: dir, env: client() });

    const bare = join(server.root, 'site.git');
    expect(await out(['rev-parse', 'refs/heads/main'], { cwd: bare, env: client() })).to.equal(pushed);
    expect(await out(['rev-parse', 'refs/heads/main^'], { cwd: bare, env: client() })).to.equal(base);
    expect(await out(['cat-file', 'blob', 'refs/heads/main:index.html'], { cwd: bare, env: client() })).to.equal('v2');
    expect(ofRepo(server, 'site').map((r) => `${r.method} ${r.url} ${r.status}`)).to.include('POST /site.git/git-receive-pack 200');
  });

  it('speaks protocol v2: the Git-Protocol header reaches http-backend', async () => {
    const url = await server.createRepo('site');
    await server.commit('site', 'main', { 'index.html': 'x\n' });
    await git(['clone', '--quiet', url, join(scratch, 'clone')], { env: client() });
    const requests = ofRepo(server, 'site');
    expect(requests).to.not.be.empty;
    for (const r of requests) expect(r.gitProtocol, `${r.method} ${r.url}`).to.equal('version=2');

    // the answer differs only because GIT_PROTOCOL is passed on: a v2 capability advertisement
    // with the header, a v0 ref advertisement without it
    const advert = async (headers: Record<string, string>) => (await fetch(`${url}/info/refs?service=git-upload-pack`, { headers })).text();
    const v2 = await advert({ 'Git-Protocol': 'version=2' });
    const v0 = await advert({});
    expect(v2).to.match(/^000eversion 2\n/);
    expect(v2).to.include('ls-refs');
    expect(v0)
      .to.match(/^001e# service=git-upload-pack\n0000/)
      .and.to.not.include('version 2');
    expect(v0).to.match(/[0-9a-f]{40} HEAD\0/);
  });

  it('a gzip request body (a fetch of many refs) is inflated by http-backend', async () => {
    const url = await server.createRepo('many');
    // 80 unrelated branch tips: the fetch request lists 80 wants, past the 1 KiB over which git gzips it
    const stream = Array.from(
      { length: 80 },
      (_, i) =>
        `commit refs/heads/b${i}\ncommitter t <t@example.com> 0 +0000\ndata 3\nb${i % 10}\nM 644 inline f\ndata ${`${i}`.length}\n${i}\n`,
    ).join('');
    await git(['fast-import', '--quiet'], { cwd: join(server.root, 'many.git'), env: client(), input: stream });

    const dir = join(scratch, 'clone');
    const { stderr } = await git(['clone', '--no-checkout', url, dir], {
      env: client({ GIT_TRACE_CURL: '1', GIT_TRACE_CURL_NO_DATA: '1' }),
    });
    expect(stderr).to.match(/=> Send header: Content-Encoding: gzip/);
    expect((await out(['for-each-ref', 'refs/remotes/origin/'], { cwd: dir, env: client() })).split('\n')).to.have.length(80);
  });

  it('a shallow fetch --depth 1 gets the tip only, by branch and by sha', async () => {
    const url = await server.createRepo('site');
    await server.commit('site', 'main', { 'index.html': 'v1\n' });
    const tip = await server.commit('site', 'main', { 'index.html': 'v2\n' });

    const dir = join(scratch, 'shallow');
    await git(['init', '--quiet', dir], { env: client() });
    await git(['remote', 'add', 'origin', url], { cwd: dir, env: client() });
    await git(['fetch', '--quiet', '--depth', '1', 'origin', 'main'], { cwd: dir, env: client() });
    expect(await out(['rev-parse', 'FETCH_HEAD'], { cwd: dir, env: client() })).to.equal(tip);
    expect(await out(['rev-list', '--count', 'FETCH_HEAD'], { cwd: dir, env: client() })).to.equal('1');
    expect((await readFile(join(dir, '.git', 'shallow'), 'utf8')).trim()).to.equal(tip);

    const bySha = join(scratch, 'by-sha');
    await git(['init', '--quiet', bySha], { env: client() });
    await git(['fetch', '--quiet', '--depth', '1', url, tip], { cwd: bySha, env: client() });
    expect(await out(['rev-list', '--count', tip], { cwd: bySha, env: client() })).to.equal('1');
    expect(await out(['cat-file', 'blob', `${tip}:index.html`], { cwd: bySha, env: client() })).to.equal('v2');
  });

  it('with users, refuses a clone without valid credentials (401) and allows one with them', async () => {
    await server.close();
    server = await startGitServer({ users: { alice: 's3cret' } });
    const url = await server.createRepo('private');
    await server.commit('private', 'main', { 'index.html': 'secret\n' });

    for (const [label, env] of [
      ['no credentials', client()],
      ['a wrong password', client(basicHeader('alice', 'guess'))],
    ] as const) {
      const err = await git(['clone', '--quiet', url, join(scratch, label.replace(/ /g, '-'))], { env }).catch((e: unknown) => e);
      expect(err, label).to.be.instanceOf(GitCommandError);
      expect((err as GitCommandError).exitCode, label).to.not.equal(0);
    }
    const refused = ofRepo(server, 'private');
    expect(refused).to.not.be.empty;
    expect(refused.every((r) => r.status === 401)).to.equal(true);
    expect(refused.map((r) => r.user))
      .to.include(null)
      .and.to.include('alice');

    const before = server.requests.length;
    const dir = join(scratch, 'clone');
    await git(['clone', '--quiet', url, dir], { env: client(basicHeader('alice', 's3cret')) });
    expect(await readFile(join(dir, 'index.html'), 'utf8')).to.equal('secret\n');
    const allowed = server.requests.slice(before);
    expect(allowed.map((r) => `${r.status} ${r.user}`)).to.deep.equal(allowed.map(() => '200 alice'));
    expect(allowed.map((r) => r.method)).to.include('POST');
  });

  it('serves https with the given certificate', async () => {
    await server.close();
    const pki = await Pki.create(await mkdtemp(join(scratch, 'pki-')));
    const pair = await pki.server('git', '127.0.0.1', { ips: ['127.0.0.1'] });
    server = await startGitServer({ tls: { key: await readFile(pair.key), cert: await readFile(pair.cert) } });
    expect(server.origin).to.match(/^https:\/\/127\.0\.0\.1:\d+$/);
    const url = await server.createRepo('site');
    const sha = await server.commit('site', 'main', { 'index.html': 'tls\n' });

    const dir = join(scratch, 'clone');
    await git(['-c', `http.sslCAInfo=${pki.caCert}`, 'clone', '--quiet', url, dir], { env: client() });
    expect(await out(['rev-parse', 'HEAD'], { cwd: dir, env: client() })).to.equal(sha);
  });

  it('commit() writes symlinks (120000), gitlinks (160000) and executables (100755), seen in a clone', async () => {
    const url = await server.createRepo('site');
    const sub = 'a'.repeat(40);
    await server.commit('site', 'main', {
      'index.html': 'x\n',
      current: { symlink: 'releases/v2' },
      'vendor/theme': { gitlink: sub },
      'run.sh': { content: '#!/bin/sh\n', mode: 0o755 },
    });
    const dir = join(scratch, 'clone');
    await git(['clone', '--quiet', url, dir], { env: client() });

    const entries = await lsTree(dir);
    expect(entries.find((e) => e.path === 'current')).to.include({ mode: '120000', type: 'blob' });
    expect(entries.find((e) => e.path === 'vendor/theme')).to.deep.equal({
      mode: '160000',
      type: 'commit',
      sha: sub,
      path: 'vendor/theme',
    });
    expect(entries.find((e) => e.path === 'run.sh')).to.include({ mode: '100755' });
    expect(entries.find((e) => e.path === 'index.html')).to.include({ mode: '100644' });
    expect(await readlink(join(dir, 'current'))).to.equal('releases/v2');
  });

  it('commit() chains onto the branch head, replaces the tree by default, and layers with replace: false', async () => {
    await server.createRepo('site');
    const bare = join(server.root, 'site.git');
    const paths = async (rev: string) => (await lsTree(bare, rev)).map((e) => e.path);

    const first = await server.commit('site', 'main', { 'a.txt': 'a\n', 'b.txt': 'b\n' });
    const second = await server.commit('site', 'main', { 'c.txt': 'c\n' }, { message: 'only c' });
    expect(await out(['rev-parse', `${second}^`], { cwd: bare, env: client() })).to.equal(first);
    expect(await out(['log', '-1', '--format=%s %an <%ae>', second], { cwd: bare, env: client() })).to.equal(
      'only c test <test@example.com>',
    );
    expect(await paths(second)).to.deep.equal(['c.txt']);

    const feature = await server.commit('site', 'feature', { 'd.txt': 'd\n' }, { parentBranch: 'main', replace: false });
    expect(await out(['rev-parse', `${feature}^`], { cwd: bare, env: client() })).to.equal(second);
    expect(await paths('refs/heads/feature')).to.deep.equal(['c.txt', 'd.txt']);
    expect(await out(['rev-parse', 'refs/heads/main'], { cwd: bare, env: client() })).to.equal(second);
  });
});
