/**
 * The manager's git (manager/sites/git-client.ts) against a real git server (git's own
 * http-backend: test/support/git-server.ts) and Debian's git: a tree imported as a checked site
 * archive, a version committed and pushed fast-forward only, and what a hostile repository or
 * URL tries: links out of the tree, submodules, hooks, huge files, an ever-growing history,
 * redirects, local and ext:: transports, credentials in the URL, and addresses the cluster
 * refuses.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { list } from 'tar';
import { type GitClientOptions, GitClient, GitError } from '../../manager/sites/git-client.js';
import { UrlPolicy } from '../../manager/webhooks/url-policy.js';
import { packDirectory } from '../../runner/archive.js';
import { type GitServer, git, startGitServer } from '../support/git-server.js';

const LOOPBACK = new UrlPolicy({ allowHttp: true, allowedCidrs: ['127.0.0.0/8'], settingPrefix: 'PAGEWRIGHT_SITE' });
const STRICT = new UrlPolicy({ allowHttp: true, allowedCidrs: [], settingPrefix: 'PAGEWRIGHT_SITE' });

describe('the manager git client against git http-backend', function () {
  this.timeout(60_000);
  let server: GitServer;
  let scratch: string;
  const client = (over: Partial<GitClientOptions> = {}) =>
    new GitClient({
      policy: LOOPBACK,
      scratchDir: scratch,
      timeoutMs: 20_000,
      maxFetchBytes: 8 * 1024 * 1024,
      limits: { maxEntries: 100, maxBytes: 4 * 1024 * 1024 },
      ...over,
    });
  const refusal = async (p: Promise<unknown>): Promise<GitError> => {
    const err = await p.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err, 'refused').to.be.instanceOf(GitError);
    return err as GitError;
  };

  before(async () => {
    server = await startGitServer({ users: { alice: 's3cret' } });
    scratch = await mkdtemp(join(tmpdir(), 'pw-git-client-'));
  });
  after(async () => {
    await server?.close();
    await rm(scratch, { recursive: true, force: true });
  });
  const alice = { username: 'alice', password: 's3cret' };

  it('imports the tree at a branch, a tag or a commit, under a path, as a site archive: links inside kept, modes kept, no .git', async () => {
    const url = await server.createRepo('site');
    const first = await server.commit('site', 'main', { 'public/index.html': '<h1>v1</h1>', 'README.md': 'not the site' });
    await server.commit('site', 'main', {
      'public/index.html': '<h1>v2</h1>',
      'public/css/site.css': 'body{}',
      'public/latest.html': { symlink: 'index.html' },
      'public/run.sh': { content: '#!/bin/sh\n', mode: 0o755 },
      'README.md': 'not the site',
    });
    const tip = await client().importTree({ url, ref: 'main', path: 'public', auth: alice });
    try {
      const entries = await listArchive(tip.archivePath);
      expect(entries.map((e) => e.path).sort()).to.deep.equal(['css/', 'css/site.css', 'index.html', 'latest.html', 'run.sh']);
      expect(entries.find((e) => e.path === 'latest.html')).to.deep.include({ type: 'SymbolicLink', linkpath: 'index.html' });
      expect((entries.find((e) => e.path === 'run.sh')?.mode ?? 0) & 0o111).to.not.equal(0);
      expect(tip.sha256).to.equal(
        createHash('sha256')
          .update(await readFile(tip.archivePath))
          .digest('hex'),
      );
      expect(tip.size).to.equal((await stat(tip.archivePath)).size);
    } finally {
      await tip.dispose();
    }
    const old = await client().importTree({ url, ref: first, auth: alice });
    expect(old.commit).to.equal(first);
    expect((await listArchive(old.archivePath)).map((e) => e.path).sort()).to.deep.equal(['README.md', 'public/', 'public/index.html']);
    await old.dispose();
    await git(['--git-dir', join(server.root, 'site.git'), 'tag', 'v1', first]);
    const tagged = await client().importTree({ url, ref: 'v1', auth: alice });
    expect(tagged.commit).to.equal(first);
    await tagged.dispose();
    // what a ref names now, without a fetch: a branch, a tag (annotated ones peeled), a commit id
    const bare = join(server.root, 'site.git');
    await git(['--git-dir', bare, '-c', 'user.name=t', '-c', 'user.email=t@x', 'tag', '-a', '-m', 'release', 'v1-annotated', first]);
    expect(await client().resolveRef({ url, ref: 'main', auth: alice })).to.equal(tip.commit);
    expect(await client().resolveRef({ url, ref: 'v1', auth: alice })).to.equal(first);
    expect(await client().resolveRef({ url, ref: 'v1-annotated', auth: alice })).to.equal(first);
    expect(await client().resolveRef({ url, ref: first, auth: alice })).to.equal(first);
    expect((await refusal(client().resolveRef({ url, ref: 'gone', auth: alice }))).message).to.match(/no branch or tag "gone"/);
  });

  it('fetches one commit of an ever-growing history, not the history', async () => {
    await server.createRepo('long');
    let last = '';
    // 30 commits of 200 kB that do not compress: 6 MB of history behind a 200 kB tip
    for (let i = 0; i < 30; i++) last = await server.commit('long', 'main', { 'index.html': randomish(200_000, `v${i}`) });
    // a fetch of the history would pass 1 MiB and be killed; one commit does not
    const tree = await client({ maxFetchBytes: 1024 * 1024 }).importTree({ url: `${server.origin}/long.git`, ref: 'main', auth: alice });
    expect(tree.commit).to.equal(last);
    await tree.dispose();
  });

  it('refuses a submodule, a link leaving the tree, too many files and a huge file, each with the path and the reason', async () => {
    const url = await server.createRepo('hostile');
    await server.commit('hostile', 'sub', { 'index.html': 'x', vendor: { gitlink: 'a'.repeat(40) } });
    expect((await refusal(client().importTree({ url, ref: 'sub', auth: alice }))).message).to.match(/"vendor" is a submodule/);
    await server.commit('hostile', 'link', { 'index.html': 'x', 'passwd.html': { symlink: '../../../../etc/passwd' } });
    const link = await refusal(client().importTree({ url, ref: 'link', auth: alice }));
    expect(link.code).to.equal('UnsafeSource');
    expect(link.message).to.match(/passwd\.html.*\.\./);
    await server.commit('hostile', 'abs', { 'index.html': 'x', etc: { symlink: '/etc' } });
    expect((await refusal(client().importTree({ url, ref: 'abs', auth: alice }))).message).to.match(/absolute path \/etc leaves the site/);
    await server.commit('hostile', 'many', Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`f${i}.html`, `${i}`])));
    expect((await refusal(client().importTree({ url, ref: 'many', auth: alice }))).message).to.match(/more than 100 files/);
    await server.commit('hostile', 'huge', { 'index.html': 'x', 'video.bin': Buffer.alloc(5 * 1024 * 1024, 7) });
    expect((await refusal(client().importTree({ url, ref: 'huge', auth: alice }))).message).to.match(/more than 4194304 bytes.*video\.bin/);
    // past maxFetchBytes the fetch itself is killed, before git has it all
    await server.commit('hostile', 'bomb', { 'a.bin': randomish(12 * 1024 * 1024) });
    const bomb = await refusal(
      client({ limits: { maxEntries: 100, maxBytes: 64 * 1024 * 1024 } }).importTree({ url, ref: 'bomb', auth: alice }),
    );
    expect([bomb.code, bomb.message]).to.satisfy(([c, m]: [string, string]) => c === 'UnsafeSource' && /larger than 8388608 bytes/.test(m));
  });

  it('runs none of the repository hooks and keeps its files as content', async () => {
    const url = await server.createRepo('hooks');
    const marker = join(scratch, 'hook-ran');
    const hook = `#!/bin/sh\ntouch ${marker}\n`;
    await server.commit('hooks', 'main', {
      'index.html': 'x',
      'hooks/post-checkout': { content: hook, mode: 0o755 },
      '.githooks/post-merge': { content: hook, mode: 0o755 },
    });
    // and the server-side repository's own hooks directory (what a clone would never copy anyway)
    await mkdir(join(server.root, 'hooks.git', 'hooks'), { recursive: true });
    await writeFile(join(server.root, 'hooks.git', 'hooks', 'post-checkout'), hook, { mode: 0o755 });
    const tree = await client().importTree({ url, ref: 'main', auth: alice });
    expect((await listArchive(tree.archivePath)).map((e) => e.path)).to.include('hooks/post-checkout');
    await tree.dispose();
    expect(
      await stat(marker).then(
        () => true,
        () => false,
      ),
      'no hook ran',
    ).to.equal(false);
  });

  it('refuses transports and addresses before git runs: file, ext::, credentials in the URL, loopback without the allowance', async () => {
    for (const url of [
      `file://${server.root}/site.git`,
      `${server.root}/site.git`,
      'ext::sh -c id',
      `http://alice:s3cret@127.0.0.1/site.git`,
    ]) {
      const err = await refusal(client().importTree({ url, ref: 'main' }));
      expect(err.code, url).to.equal('SourceNotAllowed');
    }
    const before = server.requests.length;
    const loop = await refusal(client({ policy: STRICT }).importTree({ url: `${server.origin}/site.git`, ref: 'main', auth: alice }));
    expect([loop.code, loop.message]).to.satisfy(([c, m]: [string, string]) => c === 'SourceNotAllowed' && /loopback/.test(m));
    // a name resolving to a refused address is refused too, whatever the name
    const named = await refusal(
      client({ policy: STRICT, resolve: async () => [{ address: '169.254.169.254', family: 4 }] }).importTree({
        url: 'https://git.example.com/site.git',
        ref: 'main',
      }),
    );
    expect(named.message).to.match(/metadata/);
    expect(server.requests.length, 'the server saw nothing').to.equal(before);
  });

  it('pins git to the address it checked: a name re-bound by DNS still reaches the vetted address', async () => {
    const url = await server.createRepo('pinned');
    await server.commit('pinned', 'main', { 'index.html': 'pinned' });
    const port = new URL(server.origin).port;
    // no DNS knows this name: only the pin (http.curloptResolve) can make git reach the server
    const tree = await client({ resolve: async () => [{ address: '127.0.0.1', family: 4 }] }).importTree({
      url: `http://git.pagewright.invalid:${port}/pinned.git`,
      ref: 'main',
      auth: alice,
    });
    expect(tree.commit).to.match(/^[0-9a-f]{40}$/);
    await tree.dispose();
    void url;
  });

  it('follows no redirect: a server answering 302 to elsewhere is a failure, not a fetch', async () => {
    const redirector = createServer((req, res) => {
      res.writeHead(302, { location: `${server.origin}${req.url}` });
      res.end();
    });
    redirector.listen(0, '127.0.0.1');
    await once(redirector, 'listening');
    try {
      const { port } = redirector.address() as AddressInfo;
      const before = server.requests.length;
      const err = await refusal(client().importTree({ url: `http://127.0.0.1:${port}/site.git`, ref: 'main', auth: alice }));
      expect(err.code).to.equal('SourceUnavailable');
      expect(server.requests.length, 'the redirect target saw nothing').to.equal(before);
    } finally {
      redirector.close();
    }
  });

  it('says the credentials were refused, without printing them', async () => {
    const err = await refusal(
      client().importTree({ url: `${server.origin}/site.git`, ref: 'main', auth: { username: 'alice', password: 'wrong' } }),
    );
    expect(err.code).to.equal('SourceUnavailable');
    expect(err.message).to.match(/refused the credentials/);
    expect(err.message).to.not.include('wrong');
    expect(err.message).to.not.include(Buffer.from('alice:wrong').toString('base64'));
    const ref = await refusal(client().importTree({ url: `${server.origin}/site.git`, ref: 'no-such-branch', auth: alice }));
    expect(ref.message).to.match(/no such ref|couldn't find remote ref/);
  });

  it('publishes a version as one commit on the branch, under a path, keeping the rest; a second publish is its child', async () => {
    const url = await server.createRepo('out');
    const base = await server.commit('out', 'main', { 'README.md': 'keep me', 'docs/old.html': 'old' });
    const v1 = await archiveOf({
      'index.html': '<h1>one</h1>',
      'a b/"quoted"\nname.html': 'odd name',
      'latest.html': { symlink: 'index.html' },
    });
    const first = await client().publish({
      url,
      branch: 'main',
      path: 'docs',
      auth: alice,
      author: { name: 'Site Bot', email: 'bot@example.com' },
      archivePath: v1,
      message: 'Pagewright: publish one\n\nPagewright-Sequence: 1\n',
    });
    expect(first.pushed).to.equal(true);
    const bare = join(server.root, 'out.git');
    expect((await git(['--git-dir', bare, 'rev-parse', 'main'])).stdout.trim()).to.equal(first.commit);
    expect((await git(['--git-dir', bare, 'rev-parse', 'main^'])).stdout.trim()).to.equal(base);
    const files = (await git(['--git-dir', bare, 'ls-tree', '-r', '--name-only', '-z', 'main'])).stdout.split('\0').filter(Boolean);
    expect(files.sort()).to.deep.equal(['README.md', 'docs/a b/"quoted"\nname.html', 'docs/index.html', 'docs/latest.html'].sort());
    expect((await git(['--git-dir', bare, 'log', '-1', '--format=%an <%ae>%n%B', 'main'])).stdout).to.match(
      /^Site Bot <bot@example.com>\nPagewright: publish one/,
    );
    expect((await git(['--git-dir', bare, 'ls-tree', 'main', 'docs/latest.html'])).stdout).to.match(/^120000 /);
    const v2 = await archiveOf({ 'index.html': '<h1>two</h1>' });
    const second = await client().publish({
      url,
      branch: 'main',
      path: 'docs',
      auth: alice,
      author: { name: 'b', email: 'b@x' },
      archivePath: v2,
      message: 'two',
    });
    expect((await git(['--git-dir', bare, 'rev-parse', 'main^'])).stdout.trim()).to.equal(
      second.commit === first.commit ? '' : first.commit,
    );
    expect((await git(['--git-dir', bare, 'show', 'main:docs/index.html'])).stdout).to.equal('<h1>two</h1>');
    // a retry after a lost answer: the tip already is this change, nothing is pushed
    const again = await client().publish({
      url,
      branch: 'main',
      auth: alice,
      author: { name: 'b', email: 'b@x' },
      archivePath: v2,
      message: 'two',
      alreadyPushed: (tip) => tip.startsWith('two'),
    });
    expect(again).to.deep.equal({ commit: second.commit, pushed: false });
  });

  it('creates a missing branch, replaces the whole tree without a path, and never force-pushes: a moved branch is PublishConflict', async () => {
    const url = await server.createRepo('race');
    const v1 = await archiveOf({ 'index.html': 'one' });
    const made = await client().publish({
      url,
      branch: 'site',
      auth: alice,
      author: { name: 'a', email: 'a@x' },
      archivePath: v1,
      message: 'one',
    });
    const bare = join(server.root, 'race.git');
    expect((await git(['--git-dir', bare, 'rev-parse', 'site'])).stdout.trim()).to.equal(made.commit);
    // someone else pushes between our fetch and our push: the hook of our alreadyPushed check is the moment
    const theirs = await server.commit('race', 'other', { 'x.html': 'unrelated history' });
    await git(['--git-dir', bare, 'update-ref', 'refs/heads/site', theirs]);
    const v2 = await archiveOf({ 'index.html': 'two' });
    const conflict = await refusal(
      client().publish({
        url,
        branch: 'site',
        auth: alice,
        author: { name: 'a', email: 'a@x' },
        archivePath: v2,
        message: 'two',
        alreadyPushed: async () => {
          // the branch moves again after we fetched it
          await git(['--git-dir', bare, 'update-ref', 'refs/heads/site', made.commit]);
          return false;
        },
      }),
    );
    expect(conflict.code).to.equal('PublishConflict');
    expect(conflict.message).to.match(/never force-pushes/);
    expect((await git(['--git-dir', bare, 'rev-parse', 'site'])).stdout.trim(), 'their commit is not overwritten').to.equal(made.commit);
  });

  it('leaves nothing behind in its scratch directory: not after an import, a refusal, a ref lookup or a publish', async () => {
    const own = await mkdtemp(join(scratch, 'own-'));
    const c = client({ scratchDir: own });
    const url = await server.createRepo('tidy');
    await server.commit('tidy', 'main', { 'index.html': 'x' });
    const tree = await c.importTree({ url, ref: 'main', auth: alice });
    await tree.dispose();
    await refusal(c.importTree({ url, ref: 'gone', auth: alice }));
    await c.resolveRef({ url, ref: 'main', auth: alice });
    const archive = await archiveOf({ 'index.html': 'y' });
    await c.publish({ url, branch: 'main', auth: alice, author: { name: 'a', email: 'a@x' }, archivePath: archive, message: 'y' });
    expect(await readdir(own)).to.deep.equal([]);
  });

  /** A site archive as storage keeps one. */
  async function archiveOf(files: Record<string, string | { symlink: string }>): Promise<string> {
    const dir = await mkdtemp(join(scratch, 'site-'));
    const { symlink } = await import('node:fs/promises');
    for (const [path, content] of Object.entries(files)) {
      await mkdir(join(dir, path, '..'), { recursive: true });
      if (typeof content === 'string') await writeFile(join(dir, path), content);
      else await symlink(content.symlink, join(dir, path));
    }
    const out = `${dir}.tar.gz`;
    await packDirectory(dir, out);
    return out;
  }
});

/** The entries of a tar.gz: path, type, link target, mode. */
async function listArchive(path: string): Promise<Array<{ path: string; type: string; linkpath?: string; mode?: number }>> {
  const out: Array<{ path: string; type: string; linkpath?: string; mode?: number }> = [];
  await list({
    file: path,
    onReadEntry: (e) => {
      out.push({
        path: e.path,
        type: e.type,
        ...(e.linkpath ? { linkpath: e.linkpath } : {}),
        ...(e.mode !== undefined ? { mode: e.mode } : {}),
      });
    },
  });
  return out;
}

/** Incompressible bytes, so git's pack is as large as the file. */
function randomish(size: number, seed = 'seed'): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let i = 0; i < size; i += block.length) {
    block.copy(out, i);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}
