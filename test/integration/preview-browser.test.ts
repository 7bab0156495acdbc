/**
 * The review page and the previews in a real browser (Debian's Chromium, headless, driven by
 * playwright-core), the way a user looks at them: the page renders the diff and both previews
 * (their scripts run, their styles and images load through their relative links), and a
 * screenshot is kept in test-artifacts/. Then the attacker's view: a job whose output is a
 * hostile site, whose script tries to read the review page's DOM, its cookie and storage,
 * another job's preview (by fetch and by iframe), the review page itself, to navigate the top
 * window and open popups. It reports what each attempt got into its own DOM; the test reads
 * that through the frame, and checks the review page is as it was. A preview opened on its own
 * runs in an opaque origin too.
 */
/// <reference lib="dom" />
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { type BrowserContext, type Frame, type Page, chromium } from 'playwright-core';
import { type PreviewFixture, bakeryDiff, bakerySite, startPreviewFixture } from '../support/preview-fixture.js';
import { REPO_ROOT } from '../support/sites.js';

const NS = 'team-a';
const COOKIE = 'SECRET-COOKIE-of-the-review-origin';
const STORED = 'SECRET-STORAGE-of-the-review-origin';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
];
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts');

/**
 * What the agent planted: every attempt's outcome goes into #results as JSON, then
 * body[data-done] is set. Outcomes are {threw: error name} or {value: what it read}.
 * `other` is another job's preview on the same host, `review` this job's review page.
 */
const ATTACK_JS = `
const results = {};
const attempt = (name, fn) => {
  try { results[name] = { value: String(fn()) }; } catch (e) { results[name] = { threw: e && e.name ? e.name : String(e) }; }
};
const attemptAsync = async (name, fn) => {
  try { results[name] = { value: String(await fn()) }; } catch (e) { results[name] = { threw: e && e.name ? e.name : String(e) }; }
};
const here = new URL(location.href);
const api = here.pathname.slice(0, here.pathname.indexOf('/jobs/'));
const other = here.origin + api + '/jobs/holiday/output/index.html';
const review = here.origin + api + '/jobs/evil/review';

// first, what would take effect at once
attempt('top.location=', () => { top.location.href = 'https://attacker.invalid/'; return 'assigned'; });
attempt('parent.location.href', () => parent.location.href);
attempt('window.open', () => window.open('https://attacker.invalid/popup'));
attempt('parent.document', () => { parent.document.body.innerHTML = '<h1>pwned</h1>'; return parent.document.title; });
attempt('top.document', () => top.document.cookie);
attempt('parent.frames[1].document', () => parent.frames[1].document.body.innerHTML);
attempt('self.origin', () => self.origin);
attempt('document.cookie', () => document.cookie);
attempt('document.cookie=', () => { document.cookie = 'planted=1; path=/'; return document.cookie; });
attempt('localStorage', () => localStorage.getItem('pw'));
attempt('sessionStorage', () => sessionStorage.getItem('pw'));
attempt('document.domain=', () => { document.domain = here.hostname; return document.domain; });
await attemptAsync('indexedDB', () => new Promise((resolve, reject) => { const r = indexedDB.open('pw'); r.onsuccess = () => resolve('opened'); r.onerror = () => reject(r.error); }));
await attemptAsync('caches', () => caches.open('pw').then(() => 'opened'));
await attemptAsync('serviceWorker', () => navigator.serviceWorker.register('sw.js').then(() => 'registered'));
await attemptAsync('fetch other preview', () => fetch(other).then((r) => r.text()));
await attemptAsync('fetch other preview no-cors', () => fetch(other, { mode: 'no-cors' }).then(async (r) => r.type + ':' + (await r.text())));
await attemptAsync('fetch review page', () => fetch(review, { credentials: 'include' }).then((r) => r.text()));
await attemptAsync('fetch review no-cors', () => fetch(review, { mode: 'no-cors', credentials: 'include' }).then(async (r) => r.type + ':' + (await r.text())));
await attemptAsync('xhr other preview', () => new Promise((resolve, reject) => { const x = new XMLHttpRequest(); x.open('GET', other); x.onload = () => resolve(x.responseText); x.onerror = () => reject(new Error('NetworkError')); x.send(); }));
const framed = (name, src) => attemptAsync(name, () => new Promise((resolve, reject) => {
  const f = document.createElement('iframe');
  f.src = src;
  f.onload = () => { try { resolve(f.contentDocument ? f.contentDocument.body.innerHTML : 'no access: ' + String(f.contentDocument)); } catch (e) { reject(e); } };
  document.body.appendChild(f);
}));
await framed('iframe other preview', other);
await framed('iframe review page', review);
document.getElementById('results').textContent = JSON.stringify(results);
document.body.dataset.done = '1';
`;

const HOSTILE_SITE = {
  'index.html': `<!doctype html><html><head><meta charset="utf-8"><title>Totally normal bakery</title></head>
<body><h1>Harbor Lane Bakery</h1><pre id="results"></pre><script type="module" src="module-probe.js"></script><script src="attack.js"></script></body></html>\n`,
  'attack.js': `(async () => {\n${ATTACK_JS}\n})();\n`,
  // a module script is fetched with CORS, which an opaque origin is not granted: it does not run (README, what is not protected)
  'module-probe.js': "document.body.dataset.module = 'ran';\n",
  'sw.js': 'self.addEventListener("fetch", () => {});\n',
};

describe('preview in a browser (headless Chromium)', function () {
  this.timeout(120_000);
  let f: PreviewFixture;
  let profile: string;
  let context: BrowserContext;

  before(async () => {
    f = await startPreviewFixture();
    const base = await f.pushSite('harbor-lane-bakery', bakerySite());
    const output = await f.putJobOutput('team-a-holiday-uid', bakerySite(true), bakeryDiff());
    f.addJob({
      uid: 'team-a-holiday-uid',
      name: 'holiday',
      namespace: NS,
      siteId: 'harbor-lane-bakery',
      prompt: 'Add a notice that the bakery is closed from December 24 to 26.',
      phase: 'Succeeded',
      summary: 'Added a closure notice to the home page and a news page. <img src=x onerror="document.title=\'pwned\'">',
      usage: { requests: 4, inputTokens: 48213, outputTokens: 1290 },
      baseVersion: base,
      outputVersion: output,
      diffSummary: { filesAdded: 1, filesModified: 1, filesDeleted: 0, linesAdded: 7, linesRemoved: 0, truncated: false },
    });
    const evil = await f.putJobOutput('team-a-evil-uid', { ...bakerySite(), ...HOSTILE_SITE }, bakeryDiff());
    f.addJob({
      uid: 'team-a-evil-uid',
      name: 'evil',
      namespace: NS,
      siteId: 'harbor-lane-bakery',
      phase: 'Succeeded',
      summary: 'Nothing to see.',
      baseVersion: base,
      outputVersion: evil,
    });
    profile = await mkdtemp(join(tmpdir(), 'pw-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      args: CHROMIUM_ARGS,
      headless: true,
      viewport: { width: 1400, height: 1800 },
    });
    // what an attacker would be after: a cookie of the review page's origin (set before anything loads)
    await context.addCookies([{ name: 'pw_session', value: COOKIE, url: f.apiUrl }]);
    await mkdir(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    await f?.close();
  });

  const reviewUrl = (job: string) => `${f.nsUrl(NS)}/jobs/${job}/review`;

  async function frameOf(page: Page, id: 'output' | 'base'): Promise<Frame> {
    const handle = await page.waitForSelector(`#${id}-pane iframe`);
    const frame = await handle.contentFrame();
    if (!frame) throw new Error(`no frame for ${id}`);
    await frame.waitForLoadState('load');
    return frame;
  }

  it('renders the diff and both previews, each site working through its own relative links', async () => {
    const page = await context.newPage();
    const refused: string[] = [];
    page.on('console', (m) => {
      if (/Refused|Content Security Policy/i.test(m.text())) refused.push(m.text());
    });
    await page.goto(reviewUrl('holiday'), { waitUntil: 'load' });
    expect(await page.title()).to.equal('Review team-a/holiday');
    // the stylesheet came from its own route under the page's CSP
    expect(await page.$eval('tr.add', (el) => getComputedStyle(el).backgroundColor)).to.equal('rgb(218, 251, 225)');
    // the diff, per file, with the added line styled and escaped text intact
    const files = await page.$$eval('section.file', (els) => els.map((e) => [e.getAttribute('data-path'), e.getAttribute('data-status')]));
    expect(files).to.deep.equal([
      ['index.html', 'modified'],
      ['news.html', 'added'],
    ]);
    const added = await page.$$eval('section.file[data-path="index.html"] tr.add td.code', (tds) => tds.map((td) => td.textContent));
    expect(added).to.deep.equal(['<p id="notice">Closed from December 24 to 26.</p>']);
    // the agent's summary is text, not markup
    expect(await page.$eval('#summary pre', (el) => el.textContent)).to.include('<img src=x onerror=');
    expect(await page.$$('#summary img')).to.have.length(0);
    expect(await page.title()).not.to.equal('pwned');
    expect(await page.$eval('#usage', (el) => el.textContent)).to.include('48,213');
    expect(await page.$eval('#approve code', (el) => el.textContent)).to.equal('pagewright approve holiday -n team-a');
    expect(await page.$eval('#rollback code', (el) => el.textContent)).to.equal('pagewright sites rollback harbor-lane-bakery -n team-a');

    const output = await frameOf(page, 'output');
    const base = await frameOf(page, 'base');
    expect(await output.textContent('#notice')).to.equal('Closed from December 24 to 26.');
    expect(await base.$('#notice')).to.equal(null);
    expect(await base.textContent('#hours')).to.equal('Open daily from 7 to 18.');
    for (const frame of [output, base]) {
      // its script ran, its stylesheet and its image loaded: relative links work inside the sandbox
      await frame.waitForFunction(() => document.documentElement.getAttribute('data-js') === 'ran');
      expect(await frame.$eval('body', (b) => getComputedStyle(b).fontFamily)).to.equal('sans-serif');
      await frame.waitForFunction(() => (document.getElementById('logo') as HTMLImageElement | null)?.naturalWidth === 1);
      expect(await frame.evaluate(() => self.origin)).to.equal('null');
    }
    expect(await output.$eval('#notice', (el) => getComputedStyle(el).color)).to.equal('rgb(187, 0, 0)');
    // a link inside a preview leads to the site's own page, still in the frame
    await output.click('#about');
    await output.waitForSelector('text=About us');
    expect(output.url()).to.equal(`${f.nsUrl(NS)}/jobs/holiday/output/about/`);
    await output.click('#home');
    await output.waitForSelector('#notice');
    expect(refused, 'the review page needs nothing its CSP refuses').to.deep.equal([]);
    await page.screenshot({ path: join(ARTIFACTS, 'review-page.png'), fullPage: true });
    await page.close();
  });

  it("keeps a hostile preview's script from the review page, its cookie and storage, other previews, the top window and popups", async () => {
    const page = await context.newPage();
    const popups: string[] = [];
    context.on('page', (p) => popups.push(p.url()));
    const navigations: string[] = [];
    await page.goto(reviewUrl('evil'), { waitUntil: 'load' });
    await page.evaluate((v) => localStorage.setItem('pw', v), STORED);
    page.on('framenavigated', (fr) => {
      if (fr === page.mainFrame()) navigations.push(fr.url());
    });
    const before = await page.$eval('main', (m) => m.innerHTML);
    // reload the hostile frame now that storage holds the secret too
    const handle = await page.waitForSelector('#output-pane iframe');
    await handle.evaluate((el) => {
      (el as HTMLIFrameElement).src = 'output/?again';
    });
    const frame = (await handle.contentFrame())!;
    await frame.waitForSelector('body[data-done="1"]', { timeout: 60_000 });
    const results = JSON.parse((await frame.textContent('#results')) ?? '{}') as Record<string, { threw?: string; value?: string }>;
    expect(await frame.getAttribute('body', 'data-module'), 'a module script does not load in a preview').to.equal(null);
    await page.screenshot({ path: join(ARTIFACTS, 'review-page-hostile.png'), fullPage: true });

    const everything = JSON.stringify(results);
    for (const secret of [COOKIE, STORED, 'Closed from December 24', 'Review team-a', 'Approve or roll back']) {
      expect(everything, `nothing the script read holds ${secret}`).not.to.include(secret);
    }
    const threw = (name: string) => expect(results[name]?.threw, `${name}: ${JSON.stringify(results[name])}`).to.be.a('string');
    for (const name of [
      'parent.location.href',
      'parent.document',
      'top.document',
      'parent.frames[1].document',
      'document.cookie',
      'document.cookie=',
      'localStorage',
      'sessionStorage',
      'document.domain=',
      'indexedDB',
      'caches',
      'serviceWorker',
      'fetch other preview',
      'fetch review page',
      'xhr other preview',
    ]) {
      threw(name);
    }
    expect(results['self.origin']).to.deep.equal({ value: 'null' });
    // a no-cors fetch gets an opaque answer with nothing readable in it, or (Chromium's opaque response blocking) none at all
    for (const name of ['fetch other preview no-cors', 'fetch review no-cors']) {
      const r = results[name]!;
      expect(r.threw ?? r.value, name).to.satisfy((v: string) => v === 'TypeError' || v === 'opaque:');
    }
    // frames of the other preview and of the review page: refused by their frame-ancestors, and unreadable anyway
    for (const name of ['iframe other preview', 'iframe review page']) {
      const r = results[name]!;
      expect(r.threw ?? r.value, name).to.satisfy((v: string) => v === 'SecurityError' || v.startsWith('no access'));
    }
    // the top window went nowhere, and no popup opened
    expect(results['window.open']).to.deep.equal({ value: 'null' });
    expect(page.url()).to.equal(reviewUrl('evil'));
    expect(navigations).to.deep.equal([]);
    expect(popups).to.deep.equal([]);
    // the review page is as it was (the frame's src aside), and the secrets are still where they were
    const after = await page.$eval('main', (m) => m.innerHTML);
    expect(after.replace('output/?again', 'output/')).to.equal(before);
    expect(await page.title()).to.equal('Review team-a/evil');
    expect(await page.evaluate(() => [document.cookie, localStorage.getItem('pw')])).to.deep.equal([`pw_session=${COOKIE}`, STORED]);
    const cookies = await context.cookies(f.apiUrl);
    expect(cookies.map((c) => c.name)).to.deep.equal(['pw_session']);
    await page.close();
  });

  it('runs a preview opened on its own in an opaque origin, without cookie or storage', async () => {
    const page = await context.newPage();
    await page.goto(`${f.nsUrl(NS)}/jobs/holiday/output/`, { waitUntil: 'load' });
    expect(await page.textContent('#notice')).to.equal('Closed from December 24 to 26.');
    expect(await page.evaluate(() => self.origin)).to.equal('null');
    // a string, not a function: tsx's transform would wrap a function's inner functions in a helper the page lacks
    const denied = await page.evaluate(`(() => {
      const outcome = (fn) => { try { fn(); return 'allowed'; } catch (e) { return e.name; } };
      return { cookie: outcome(() => document.cookie), storage: outcome(() => localStorage.length) };
    })()`);
    expect(denied).to.deep.equal({ cookie: 'SecurityError', storage: 'SecurityError' });
    await page.close();
  });

  it('serves the same review page through a signed link, on the public side', async () => {
    const page = await context.newPage();
    const link = (await (await fetch(`${f.nsUrl(NS)}/jobs/holiday/link`)).json()) as { url: string };
    const url = `${f.publicUrl}${new URL(link.url).pathname}`;
    await page.goto(url, { waitUntil: 'load' });
    const output = await frameOf(page, 'output');
    expect(await output.textContent('#notice')).to.equal('Closed from December 24 to 26.');
    expect(await output.evaluate(() => self.origin)).to.equal('null');
    expect(await page.$eval('tr.add', (el) => getComputedStyle(el).backgroundColor)).to.equal('rgb(218, 251, 225)');
    await page.close();
  });
});
