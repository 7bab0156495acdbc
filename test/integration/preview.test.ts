/**
 * The preview router against real storage with real sites: files served as a website (content
 * types, directory indexes and their redirects, relative links, 404s), the isolation headers on
 * every answer, path tricks sent as raw bytes on a socket, archives that try to leave the tree,
 * the cache (one download for concurrent requests, verification, eviction, restart), the raw
 * diff, and the signed-link routes.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import { jobResult } from '../support/job-result.js';
import { request } from 'undici';
import { silentLogger } from '../../common/logger.js';
import { signPreviewLink } from '../../common/preview-link.js';
import { StorageClient } from '../../common/storage-client.js';
import { ArtifactCache } from '../../preview/artifact-cache.js';
import { PREVIEW_CSP } from '../../preview/headers.js';
import { type PreviewFixture, bakeryDiff, bakerySite, startPreviewFixture } from '../support/preview-fixture.js';
import { forgeTarGzBuffer } from '../support/tar-forge.js';

const NS = 'team-a';
const bakeryCss = String(bakerySite()['css/style.css']);
/** A tree no other test uploads (versions are content addressed: the same bytes are the same, already cached, version). */
const unique = (edited = false) => ({ ...bakerySite(edited), 'id.txt': randomUUID() });
const SECRET_MARKER = 'TOP-SECRET-OUTSIDE-THE-TREE';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** Every answer the suite saw: none may set a cookie. */
const answers: Answer[] = [];

async function get(url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' | 'POST' = 'GET'): Promise<Answer> {
  const res = await request(url, { method, headers });
  const answer = { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  answers.push(answer);
  return answer;
}

/** One request with the target exactly as given (no client normalises it), on a fresh socket. */
async function raw(baseUrl: string, target: string): Promise<Answer> {
  const { hostname, port } = new URL(baseUrl);
  const socket = connect(Number(port), hostname);
  await once(socket, 'connect');
  socket.write(`GET ${target} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n\r\n`, 'latin1');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await once(socket, 'close');
  const text = Buffer.concat(chunks).toString('latin1');
  const [head = '', body = ''] = text.split('\r\n\r\n', 2);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
  const answer = { status: Number(statusLine.split(' ')[1]), headers, text: body };
  answers.push(answer);
  return answer;
}

function expectIsolated(a: Answer, what: string): void {
  expect(a.headers['content-security-policy'], what).to.equal(PREVIEW_CSP);
  expect(a.headers['x-content-type-options'], what).to.equal('nosniff');
  expect(a.headers['referrer-policy'], what).to.equal('no-referrer');
}

async function waitFor(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('preview (router, cache, signed links) against real storage', function () {
  this.timeout(60_000);
  let f: PreviewFixture;
  let base: string;
  let output: string;
  let jobUrl: string;

  before(async () => {
    f = await startPreviewFixture();
    base = await f.pushSite('harbor-lane-bakery', bakerySite());
    output = await f.putJobOutput('team-a-holiday-uid1', bakerySite(true), bakeryDiff());
    f.sites.set(`${NS}/harbor-lane-bakery`, { siteId: 'harbor-lane-bakery', currentVersion: base });
    f.addJob({
      uid: 'team-a-holiday-uid1',
      name: 'holiday',
      namespace: NS,
      siteId: 'harbor-lane-bakery',
      phase: 'Succeeded',
      baseVersion: base,
      outputVersion: output,
    });
    jobUrl = `${f.nsUrl(NS)}/jobs/holiday`;
    // what traversal would reach: a file beside the versions, in the cache dir itself
    await f.cache.init();
    await writeFile(join(f.cacheDir, 'SECRET.txt'), SECRET_MARKER);
  });

  after(async () => {
    await f?.close();
    for (const a of answers) expect(a.headers['set-cookie'], 'no answer sets a cookie').to.equal(undefined);
  });

  describe('a tree as a website', () => {
    it('serves each file with its content type and the isolation headers', async () => {
      const cases: Array<[string, RegExp]> = [
        ['output/', /^text\/html; charset=utf-8$/],
        ['output/index.html', /^text\/html; charset=utf-8$/],
        ['output/css/style.css', /^text\/css; charset=utf-8$/],
        ['output/js/app.js', /^(text|application)\/javascript; charset=utf-8$/],
        ['output/img/logo.png', /^image\/png$/],
        ['output/data/hours.json', /^application\/json; charset=utf-8$/],
        ['output/notes.txt', /^text\/plain; charset=utf-8$/],
      ];
      for (const [path, type] of cases) {
        const a = await get(`${jobUrl}/${path}`);
        expect(a.status, path).to.equal(200);
        expect(a.headers['content-type'], path).to.match(type);
        expectIsolated(a, path);
      }
      expect((await get(`${jobUrl}/output/`)).text).to.include('<p id="notice">Closed from December 24 to 26.</p>');
      expect((await get(`${jobUrl}/base/`)).text).not.to.include('notice');
      expect((await get(`${jobUrl}/output/notes.txt`)).text).to.include('<script>');
    });

    it('answers HEAD, a conditional GET with 304 under an ETag scoped to the version, and a Range', async () => {
      const head = await get(`${jobUrl}/output/css/style.css`, {}, 'HEAD');
      expect(head.status).to.equal(200);
      const etag = String(head.headers.etag);
      expect(etag).to.match(new RegExp(`^"${output.slice(0, 16)}-`));
      expect((await get(`${jobUrl}/base/css/style.css`)).headers.etag).to.match(new RegExp(`^"${base.slice(0, 16)}-`));
      const again = await get(`${jobUrl}/output/css/style.css`, { 'if-none-match': etag });
      expect(again.status).to.equal(304);
      expectIsolated(again, '304');
      const range = await get(`${jobUrl}/output/css/style.css`, { range: 'bytes=0-3' });
      expect([range.status, range.text, range.headers['content-range']]).to.deep.equal([206, 'body', `bytes 0-3/${bakeryCss.length}`]);
    });

    it('answers a small file from memory after the first time exactly as send did, and leaves Range to send', async () => {
      const version = await f.pushSite('memo-site', unique());
      f.sites.set(`${NS}/memo-site`, { siteId: 'memo-site', currentVersion: version });
      const url = `${f.nsUrl(NS)}/sites/memo-site/versions/current/files/menu.html`;
      const before = f.apps.router.answers.bytes;
      const first = await get(url);
      await waitFor('the answer to be kept', () => f.apps.router.answers.bytes > before);
      // gone from disk: only the memory can answer now
      await rm(join(f.cacheDir, version, 'menu.html'));
      const second = await get(url);
      expect(second.status).to.equal(200);
      expect(second.text).to.equal(first.text);
      for (const h of [
        'content-type',
        'content-length',
        'etag',
        'last-modified',
        'accept-ranges',
        'cache-control',
        'content-security-policy',
        'x-content-type-options',
        'referrer-policy',
      ]) {
        expect(second.headers[h], h).to.equal(first.headers[h]);
      }
      const head = await get(url, {}, 'HEAD');
      expect([head.status, head.text, head.headers['content-length']]).to.deep.equal([200, '', first.headers['content-length']]);
      const notModified = await get(url, { 'if-none-match': String(first.headers.etag) });
      expect([notModified.status, notModified.text]).to.deep.equal([304, '']);
      expectIsolated(notModified, '304 from memory');
      expect((await get(url, { 'if-none-match': '"other"' })).status).to.equal(200);
      // a range is send's to answer, and send finds no file any more
      expect((await get(url, { range: 'bytes=0-9' })).status).to.equal(404);
    });

    it("serves a directory's index.html, and redirects a directory without its slash to it, relatively", async () => {
      const about = await get(`${jobUrl}/output/about/`);
      expect(about.status).to.equal(200);
      expect(about.text).to.include('About us');
      for (const [url, location] of [
        [`${jobUrl}/output/about`, './about/'],
        [`${jobUrl}/output/about?x=1`, './about/?x=1'],
        [`${jobUrl}/output`, './output/'],
        [`${f.nsUrl(NS)}/sites/harbor-lane-bakery/versions/current/files`, './files/'],
      ] as const) {
        const a = await get(url);
        expect(a.status, url).to.equal(301);
        expect(a.headers.location, url).to.equal(location);
        expectIsolated(a, url);
        const next = await get(new URL(location, url).href);
        expect(next.status, `${url} -> ${location}`).to.equal(200);
      }
    });

    it("makes the site's own relative links work: every href and src of its pages resolves", async () => {
      const seen = new Set<string>();
      const queue = [`${jobUrl}/output/`];
      while (queue.length > 0) {
        const url = queue.shift()!;
        if (seen.has(url)) continue;
        seen.add(url);
        const a = await get(url);
        expect(a.status, url).to.equal(200);
        if (!String(a.headers['content-type']).startsWith('text/html')) continue;
        for (const m of a.text.matchAll(/(?:href|src)="([^"]+)"/g)) queue.push(new URL(m[1]!, url).href);
      }
      expect([...seen].map((u) => u.slice(jobUrl.length))).to.include.members([
        '/output/',
        '/output/css/style.css',
        '/output/js/app.js',
        '/output/img/logo.png',
        '/output/about/',
        '/output/menu.html',
        '/output/index.html',
      ]);
    });

    it('serves a link inside the tree (latest.html -> menu.html)', async () => {
      const a = await get(`${jobUrl}/output/latest.html`);
      expect(a.status).to.equal(200);
      expect(a.text).to.include('Sourdough');
    });

    it('answers 404 with the error envelope for what is not there: files, dotfiles, a directory without an index', async () => {
      for (const path of [
        'output/nope.html',
        'output/about/nope/',
        'output/.codex/instructions.md',
        'output/img/',
        'output/index.html/x',
      ]) {
        const a = await get(`${jobUrl}/${path}`);
        expect(a.status, path).to.equal(404);
        expect(JSON.parse(a.text), path).to.include({ error: 'NotFound' });
        expectIsolated(a, path);
      }
      expect((await get(`${jobUrl}/output/`, {}, 'POST')).status).to.equal(404);
    });

    it('answers unknown jobs, sites and versions with their own codes', async () => {
      f.addJob({ uid: 'uid-queued', name: 'queued', namespace: NS, siteId: 'harbor-lane-bakery' });
      const cases: Array<[string, number, string]> = [
        [`${f.nsUrl(NS)}/jobs/nope/review`, 404, 'JobNotFound'],
        [`${f.nsUrl(NS)}/jobs/nope/output/`, 404, 'JobNotFound'],
        [`${f.nsUrl('other-ns')}/jobs/holiday/output/`, 404, 'JobNotFound'],
        [`${f.nsUrl(NS)}/jobs/queued/output/`, 404, 'ObjectNotFound'],
        [`${f.nsUrl(NS)}/jobs/queued/base/`, 404, 'VersionNotFound'],
        [`${f.nsUrl(NS)}/jobs/queued/diff`, 404, 'ObjectNotFound'],
        [`${f.nsUrl(NS)}/sites/nope/versions/current/files/`, 404, 'SiteNotFound'],
        [`${f.nsUrl(NS)}/sites/harbor-lane-bakery/versions/${'f'.repeat(64)}/files/`, 404, 'VersionNotFound'],
        // a version that exists, but is not this site's (the job's output was never published)
        [`${f.nsUrl(NS)}/sites/harbor-lane-bakery/versions/${output}/files/`, 404, 'VersionNotFound'],
        [`${f.nsUrl(NS)}/sites/harbor-lane-bakery/versions/latest/files/`, 400, 'InvalidVersion'],
      ];
      for (const [url, status, code] of cases) {
        const a = await get(url);
        expect([a.status, JSON.parse(a.text).error], url).to.deep.equal([status, code]);
      }
    });

    it("serves a follow-up's base from the output of the job it follows, which was never a site version", async () => {
      f.addJob({
        uid: 'uid-followup',
        name: 'followup',
        namespace: NS,
        siteId: 'harbor-lane-bakery',
        phase: 'Running',
        baseVersion: output,
        baseJobUid: 'team-a-holiday-uid1',
      });
      const followedOutput = await get(`${jobUrl}/output/index.html`);
      const followUpBase = await get(`${f.nsUrl(NS)}/jobs/followup/base/index.html`);
      const siteBase = await get(`${jobUrl}/base/index.html`);
      expect([followUpBase.status, followedOutput.status]).to.deep.equal([200, 200]);
      expect(followUpBase.text).to.equal(followedOutput.text).and.not.equal(siteBase.text);
      expectIsolated(followUpBase, 'follow-up base');
    });

    it('serves a site version by sha256 and as current', async () => {
      const byVersion = await get(`${f.nsUrl(NS)}/sites/harbor-lane-bakery/versions/${base}/files/`);
      const current = await get(`${f.nsUrl(NS)}/sites/harbor-lane-bakery/versions/current/files/index.html`);
      expect([byVersion.status, current.status]).to.deep.equal([200, 200]);
      expect(current.text).to.equal(byVersion.text);
      expectIsolated(current, 'current');
    });
  });

  describe('path tricks, sent as raw bytes', () => {
    it('never serves anything outside the tree: .., encoded, double-encoded, backslashes, NUL, encoded slashes', async () => {
      const prefix = new URL(`${jobUrl}/output`).pathname;
      const targets = [
        '/../SECRET.txt',
        '/../../SECRET.txt',
        '/../../../../../../etc/passwd',
        `/../${base}/index.html`,
        '/%2e%2e/SECRET.txt',
        '/%2E%2E/%2e%2e/SECRET.txt',
        '/.%2e/SECRET.txt',
        '/%2e%2e%2fSECRET.txt',
        '/..%2fSECRET.txt',
        '/..%2F..%2F..%2Fetc%2Fpasswd',
        '/%252e%252e/SECRET.txt',
        '/..\\SECRET.txt',
        '/..\\..\\..\\etc\\passwd',
        '/%5c..%5cSECRET.txt',
        '/..%5cSECRET.txt',
        '/index.html%00.png',
        '/%00',
        '/%',
        '//etc/passwd',
        '/./../SECRET.txt',
        '/about/../../SECRET.txt',
      ];
      for (const t of targets) {
        const a = await raw(f.apiUrl, `${prefix}${t}`);
        expect([400, 404], t).to.include(a.status);
        expect(a.text, t).not.to.include(SECRET_MARKER);
        expect(a.text, t).not.to.match(/root:.*:0:0:/);
        expect(a.text, t).not.to.include('Harbor Lane');
        if (a.status === 404) expectIsolated(a, t);
      }
      // and the router's own segments: a path that climbs out of one job into another or into a site
      for (const t of [
        `${prefix}/../../other/output/`,
        `${new URL(f.nsUrl(NS)).pathname}/jobs/holiday/output/..%2f..%2f..%2fsites%2fharbor-lane-bakery%2fversions%2fcurrent%2ffiles%2f`,
        `${new URL(f.nsUrl(NS)).pathname}/jobs/..%2fholiday/output/`,
      ]) {
        const a = await raw(f.apiUrl, t);
        expect([400, 404], t).to.include(a.status);
        expect(a.text, t).not.to.include('Harbor Lane');
      }
    });

    it('refuses an archive whose links leave the tree at extraction, keeps nothing, and does not download it again', async () => {
      const cases: Array<[string, Parameters<typeof forgeTarGzBuffer>[0]]> = [
        [
          'link-up',
          [
            { path: 'index.html', content: 'hi' },
            { path: 'secret', type: 'symlink', linkpath: '../SECRET.txt' },
          ],
        ],
        [
          'link-abs',
          [
            { path: 'index.html', content: 'hi' },
            { path: 'passwd', type: 'symlink', linkpath: '/etc/passwd' },
          ],
        ],
        ['dir-link', [{ path: 'up', type: 'symlink', linkpath: '../../..' }]],
        ['hardlink-out', [{ path: 'x', type: 'hardlink', linkpath: '../SECRET.txt' }]],
        ['dotdot', [{ path: '../escape.html', content: SECRET_MARKER }]],
        ['device', [{ path: 'null', type: 'chardev' }]],
      ];
      for (const [name, entries] of cases) {
        const version = (await f.storage.admin.putSiteArtifact(`evil-${name}`, await forgeTarGzBuffer(entries))).version;
        f.sites.set(`${NS}/evil-${name}`, { siteId: `evil-${name}`, currentVersion: version });
        const url = `${f.nsUrl(NS)}/sites/evil-${name}/versions/current/files/index.html`;
        const downloads = () => f.proxy.count(new RegExp(`GET /sites/evil-${name}/artifact`));
        const first = await get(url);
        expect([first.status, JSON.parse(first.text).error], name).to.deep.equal([422, 'UnsafeArchive']);
        expect(first.text, name).not.to.include(SECRET_MARKER);
        expect(existsSync(join(f.cacheDir, version)), name).to.equal(false);
        expect(existsSync(join(f.cacheDir, '..', 'escape.html')), name).to.equal(false);
        const second = await get(url);
        expect(second.status, name).to.equal(422);
        expect(downloads(), `${name}: refused once, remembered`).to.equal(1);
      }
      expect(
        (await readdir(f.cacheDir)).filter((d) => d.startsWith('.tmp-')),
        'no temp dir left',
      ).to.deep.equal([]);
    });
  });

  describe('the cache', () => {
    it('downloads a version once for many concurrent requests', async () => {
      const version = await f.pushSite('concurrent-site', unique());
      f.sites.set(`${NS}/concurrent-site`, { siteId: 'concurrent-site', currentVersion: version });
      const pattern = /GET \/sites\/concurrent-site\/artifact/;
      f.proxy.hold();
      const paths = [
        'index.html',
        'menu.html',
        'css/style.css',
        'about/',
        'img/logo.png',
        'js/app.js',
        'index.html',
        'menu.html',
        'data/hours.json',
        'notes.txt',
      ];
      const pending = paths.map((p) => get(`${f.nsUrl(NS)}/sites/concurrent-site/versions/current/files/${p}`));
      try {
        await waitFor(`the first download to reach storage (${f.proxy.requests.slice(-3).join(', ')})`, () => f.proxy.count(pattern) === 1);
        // give the other nine every chance to start a download of their own
        await new Promise((r) => setTimeout(r, 200));
      } finally {
        f.proxy.release();
      }
      const done = await Promise.all(pending);
      expect(done.map((a) => a.status)).to.deep.equal(paths.map(() => 200));
      expect(f.proxy.count(pattern)).to.equal(1);
      // and later requests come from disk
      await get(`${f.nsUrl(NS)}/sites/concurrent-site/versions/current/files/index.html`);
      expect(f.proxy.count(pattern)).to.equal(1);
    });

    it('keeps nothing of a download whose bytes are not the version storage named, or whose ETag is another version', async () => {
      const good = await f.pushSite('lying-site', unique());
      const other = await f.pushSite('lying-site', unique(true));
      for (const [how, tamper] of [
        ['a flipped byte', () => f.proxy.corrupt(/GET \/sites\/lying-site\/artifact/)],
        [
          'another version under its ETag',
          () => f.proxy.substitute(/GET \/sites\/lying-site\/artifact/, `/sites/lying-site/artifact?version=${other}`, good),
        ],
        [
          'another ETag',
          () => f.proxy.substitute(/GET \/sites\/lying-site\/artifact/, `/sites/lying-site/artifact?version=${other}`, other),
        ],
      ] as const) {
        f.sites.set(`${NS}/lying-site`, { siteId: 'lying-site', currentVersion: good });
        tamper();
        try {
          const a = await get(`${f.nsUrl(NS)}/sites/lying-site/versions/current/files/index.html`);
          expect([a.status, JSON.parse(a.text).error], how).to.deep.equal([500, 'ArtifactCorrupt']);
          expect(existsSync(join(f.cacheDir, good)), how).to.equal(false);
        } finally {
          f.proxy.corrupt(null);
          f.proxy.substitute(null);
        }
      }
      // not remembered as refused: an honest download then works
      expect((await get(`${f.nsUrl(NS)}/sites/lying-site/versions/current/files/index.html`)).status).to.equal(200);
    });

    it('evicts the least recently used versions past its budget, never one being read, and fetches an evicted one again', async () => {
      const dir = join(f.cacheDir, '..', 'small-cache');
      const admin = new StorageClient({ baseUrl: f.proxy.url, token: f.storage.adminToken });
      const versions: string[] = [];
      for (let i = 0; i < 3; i++) versions.push(await f.pushSite(`lru-${i}`, { ...unique(), 'big.bin': Buffer.alloc(300_000, i + 1) }));
      const open = (i: number) => () => admin.downloadArtifact(`lru-${i}`, { version: versions[i]! });
      const downloads = (i: number) => f.proxy.count(new RegExp(`GET /sites/lru-${i}/artifact`));
      // room for two versions (each a little over 300 KB on disk), not three
      const cache = new ArtifactCache({ dir, maxBytes: 800_000, limits: { maxEntries: 100, maxBytes: 10_000_000 }, logger: silentLogger });
      const a = await cache.acquire(versions[0]!, open(0));
      (await cache.acquire(versions[1]!, open(1))).release();
      (await cache.acquire(versions[2]!, open(2))).release();
      // 0 is the least recently used but still held: 1 went instead
      expect(existsSync(join(dir, versions[0]!)), 'held').to.equal(true);
      await cache.close();
      expect(existsSync(join(dir, versions[1]!)), 'evicted').to.equal(false);
      expect(cache.stats()).to.include({ versions: 2, evictions: 1 });
      a.release();
      expect(cache.stats().bytes).to.be.at.most(800_000);
      // 1 again: downloaded a second time; 0, now the least recently used and free, makes room
      (await cache.acquire(versions[1]!, open(1))).release();
      await cache.close();
      expect(downloads(1)).to.equal(2);
      expect(existsSync(join(dir, versions[0]!))).to.equal(false);
      expect(existsSync(join(dir, versions[2]!))).to.equal(true);
      expect(downloads(0)).to.equal(1);
      expect(cache.stats()).to.include({ versions: 2, evictions: 2 });
    });

    it('adopts what a previous process extracted, and not a tree with a link out of it', async () => {
      const dir = join(f.cacheDir, '..', 'restart-cache');
      const admin = new StorageClient({ baseUrl: f.proxy.url, token: f.storage.adminToken });
      const version = await f.pushSite('restart-site', unique());
      const open = () => admin.downloadArtifact('restart-site', { version });
      const first = new ArtifactCache({
        dir,
        maxBytes: 10_000_000,
        limits: { maxEntries: 100, maxBytes: 10_000_000 },
        logger: silentLogger,
      });
      (await first.acquire(version, open)).release();
      // what a crash leaves, and a planted tree whose link leads out
      await mkdir(join(dir, '.tmp-crashed'), { recursive: true });
      const planted = 'e'.repeat(64);
      await mkdir(join(dir, planted), { recursive: true });
      await symlink('/etc', join(dir, planted, 'etc'));
      const second = new ArtifactCache({
        dir,
        maxBytes: 10_000_000,
        limits: { maxEntries: 100, maxBytes: 10_000_000 },
        logger: silentLogger,
      });
      await second.init();
      expect(second.stats().versions).to.equal(1);
      const tree = await second.acquire(version, open);
      tree.release();
      expect(f.proxy.count(/GET \/sites\/restart-site\/artifact/)).to.equal(1);
      expect(existsSync(join(dir, '.tmp-crashed'))).to.equal(false);
      expect(existsSync(join(dir, planted))).to.equal(false);
    });
  });

  describe('the diff and the review page', () => {
    it('serves diff.patch as text/plain, isolated', async () => {
      const a = await get(`${jobUrl}/diff`);
      expect(a.status).to.equal(200);
      expect(a.headers['content-type']).to.equal('text/plain; charset=utf-8');
      expect(a.text).to.equal(bakeryDiff());
      expectIsolated(a, 'diff');
    });

    it('renders the review page with its own strict CSP and its stylesheet from its own route', async () => {
      const a = await get(`${jobUrl}/review`);
      expect(a.status).to.equal(200);
      expect(a.headers['content-type']).to.equal('text/html; charset=utf-8');
      expect(a.headers['content-security-policy']).to.equal(
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      );
      expect(a.headers['x-frame-options']).to.equal('DENY');
      expect(a.headers['cache-control']).to.equal('no-store');
      expect(a.text).to.include('data-path="news.html" data-status="added"');
      expect(a.text).to.include('Closed from December 24 to 26.');
      const css = await get(`${jobUrl}/review/style.css`);
      expect([css.status, css.headers['content-type']]).to.deep.equal([200, 'text/css; charset=utf-8']);
      const queued = await get(`${f.nsUrl(NS)}/jobs/queued/review`);
      expect(queued.text).to.include('No diff yet.');
    });
  });

  describe("the checks' findings on the review page", () => {
    const finding = (i: number) => ({
      path: `p${i}.html`,
      line: i + 1,
      code: 'broken-link',
      message: `link ${i} <b>broken</b>`,
      introduced: true,
    });
    const links = (n: number) => ({
      name: 'links' as const,
      passed: false,
      introduced: 15,
      preexisting: 0,
      findings: Array.from({ length: n }, (_, i) => finding(i)),
    });

    it('lists every finding from the manifest of the output (the status has the first 10), escaped', async () => {
      const uid = 'team-a-checks-uid';
      const out = await f.putJobOutput(uid, bakerySite(true), bakeryDiff());
      const manifest = {
        manifest_version: 1,
        job_id: uid,
        site_id: 'harbor-lane-bakery',
        attempt: 1,
        result: jobResult(uid, 1, { output_version: out, base_version: base }),
        changes: [],
        files: [],
        output_size: 1,
        codex_version: null,
        model: null,
        checks: [links(15)],
      };
      await f.storage.admin.putJobObject(uid, 'manifest.json', JSON.stringify(manifest));
      const job = { uid, namespace: NS, siteId: 'harbor-lane-bakery', phase: 'Succeeded' as const, baseVersion: base, outputVersion: out };
      f.addJob({ ...job, name: 'checked', checks: [links(10)] });
      const page = (await get(`${f.nsUrl(NS)}/jobs/checked/review`)).text;
      expect(page).to.include('<code>p14.html:15</code> link 14 &lt;b&gt;broken&lt;/b&gt;');
      expect(page).not.to.include('The first 10 of 15');
      // a manifest of another output (a later attempt) is not this job's: the status's findings
      f.addJob({ ...job, name: 'checked-other', outputVersion: base, checks: [links(10)] });
      const other = (await get(`${f.nsUrl(NS)}/jobs/checked-other/review`)).text;
      expect(other).to.include('The first 10 of 15');
      expect(other).not.to.include('p14.html');
    });
  });

  describe('signed links', () => {
    const token = (link: Parameters<typeof signPreviewLink>[0]) => signPreviewLink(link, f.linkSecret);
    const inAnHour = () => new Date(Date.now() + 3600_000);

    it('a job link opens the review page, the output, the base and the diff; the link route issues one', async () => {
      const issued = await get(`${jobUrl}/link`);
      expect(issued.status).to.equal(200);
      const { url } = JSON.parse(issued.text) as { url: string };
      expect(url).to.match(/^https:\/\/preview\.example\.test\/p\/[\w-]+\.[\w-]{43}\/review$/);
      const path = new URL(url).pathname;
      const review = await get(`${f.publicUrl}${path}`);
      expect(review.status).to.equal(200);
      expect(review.text).to.include('<iframe src="output/" sandbox="allow-scripts"');
      const root = path.replace(/\/review$/, '');
      for (const [sub, needle] of [
        ['/output/', 'Closed from December 24'],
        ['/base/', 'Open daily'],
        ['/diff', 'diff --git a/news.html'],
        ['/review/style.css', 'iframe'],
      ] as const) {
        const a = await get(`${f.publicUrl}${root}${sub}`);
        expect(a.status, sub).to.equal(200);
        expect(a.text, sub).to.include(needle);
      }
      expect((await get(`${f.publicUrl}${root}/output`)).headers.location).to.equal('./output/');
      expect((await get(`${f.publicUrl}${root}/files/`)).status, 'a job link opens no site files').to.equal(404);
    });

    it('a site link opens that version, or the current one', async () => {
      const pinned = token({ kind: 'site', namespace: NS, name: 'harbor-lane-bakery', version: base, expiresAt: inAnHour() });
      const a = await get(`${f.publicUrl}/p/${pinned}/files/menu.html`);
      expect(a.status).to.equal(200);
      expectIsolated(a, 'site link');
      const current = token({ kind: 'site', namespace: NS, name: 'harbor-lane-bakery', expiresAt: inAnHour() });
      expect((await get(`${f.publicUrl}/p/${current}/files/`)).text).to.include('Open daily');
      expect((await get(`${f.publicUrl}/p/${current}/review`)).status, 'a site link opens no review page').to.equal(404);
    });

    it('refuses an expired, a forged and a tampered link, and a link to a job that is gone', async () => {
      const expired = token({ kind: 'job', namespace: NS, name: 'holiday', expiresAt: new Date(Date.now() - 1000) });
      const forged = signPreviewLink({ kind: 'job', namespace: NS, name: 'holiday', expiresAt: inAnHour() }, 'x'.repeat(64));
      const good = token({ kind: 'job', namespace: NS, name: 'holiday', expiresAt: inAnHour() });
      const tampered = `${Buffer.from(JSON.stringify({ k: 'job', ns: NS, n: 'queued', exp: Math.floor(Date.now() / 1000) + 3600 })).toString('base64url')}.${good.split('.')[1]}`;
      const gone = token({ kind: 'job', namespace: NS, name: 'deleted-job', expiresAt: inAnHour() });
      for (const [t, status, code] of [
        [expired, 401, 'TokenExpired'],
        [forged, 401, 'TokenInvalid'],
        [tampered, 401, 'TokenInvalid'],
        ['garbage', 401, 'TokenInvalid'],
        [gone, 404, 'JobNotFound'],
      ] as const) {
        for (const sub of ['review', 'output/', 'base/index.html', 'diff']) {
          const a = await get(`${f.publicUrl}/p/${t}/${sub}`);
          expect([a.status, JSON.parse(a.text).error], `${code} ${sub}`).to.deep.equal([status, code]);
          expect(a.text).not.to.include('Harbor Lane');
        }
      }
    });

    it('the public side serves nothing but the links and its health check', async () => {
      expect((await get(`${f.publicUrl}/healthz`)).status).to.equal(200);
      expect((await get(`${f.publicUrl}${new URL(`${jobUrl}/review`).pathname}`)).status).to.equal(404);
    });
  });
});
