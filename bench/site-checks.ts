/**
 * The runner's HTML and link checks (runner/checks/site-checks.ts: checkSite, with
 * runner/checks/page.ts's parsePage) on a generated site, against reading every page and a plain
 * `parse5.parse` of each (the least any parser-based check does), measured in the same run. The
 * issue's goal: "the HTML and link checks on a 1,000-page site <= 2 s" (one run), so the absolute
 * time is reported against 2 s as well as the ratio.
 *
 * The site is generated from a seed: BENCH_CHECKS_PAGES pages (default 1,000) over 50 directories
 * (`section-N/index.html`, `section-N/page-K.html`), HTML of 5-30 KiB each (doctype, a head with
 * stylesheets and scripts, a nav of 20 links to other pages, relative, absolute and as directories,
 * sections of paragraphs with inline links, figures with `src`, `srcset` and a webp `<source>`,
 * lists, tables, external and `mailto:` links), and the CSS, JS and images they reference. The base
 * has 4 broken references planted (3 links, 1 image) and 2 parse errors (a stray `</span>`, a
 * duplicate attribute). The output is a copy where BENCH_CHECKS_CHANGE_PCT percent of the pages
 * (default 5, chosen by the seed, two of them planted pages of the base) are edited (a paragraph
 * reworded, one added with a link), one of them so that it now has a broken link and a stray end
 * tag, and one page that 1 in 40 pages link to is deleted.
 *
 * Both sides read the output tree from the page cache (a warm-up of each first), 16 files at a
 * time (checkSite's own concurrency); checkSite also reads the base of each modified page. Runs
 * alternate which side goes first. The trees' snapshots and diff (runner/tree.ts), which the
 * runner takes anyway, are given to checkSite, not timed with it. For the breakdown, not compared:
 * the reads alone, and on the pages already in memory, parsePage (one parse5 parse with
 * locations, end tags recorded, and its walk of the tree) and a parse5.parse with locations alone.
 *
 * Checks: the diff is the modified pages and the deleted one; both checks fail; their introduced
 * findings are exactly the planted broken link and stray end tag and every link to the deleted
 * page, at their lines; their preexisting ones exactly the base's planted ones. The bench fails on
 * a failed check, never on a missed goal.
 *
 *   make bench-checks   (BENCH_RUNS=5, BENCH_CHECKS_PAGES=1000, BENCH_CHECKS_CHANGE_PCT=5)
 */
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pLimit from 'p-limit';
import { parse } from 'parse5';
import { MAX_MANIFEST_FINDINGS, type ManifestCheck } from '../common/schemas.js';
import { parsePage } from '../runner/checks/page.js';
import { checkSite, isPage, type SiteCheckInput } from '../runner/checks/site-checks.js';
import { diffTrees, snapshotTree } from '../runner/tree.js';
import { RUNS, alternating, headline, machine, printTable, record, sized, summarize, summarizeAll, timed, noise, prng } from './lib.js';

const PAGES = sized('BENCH_CHECKS_PAGES', 1000, 100);
const CHANGE_PCT = sized('BENCH_CHECKS_CHANGE_PCT', 5, 5);
const DIRS = Math.min(50, Math.floor(PAGES / 2));
/** Photos per directory, each as four files (jpg, 480w, 960w, webp). */
const PHOTOS = 6;
/** 1 page in this many links to the page that is deleted. */
const LINKER_EVERY = 40;
/** checkSite reads 16 pages at a time: the baseline reads as many. */
const CONCURRENCY = 16;
const GOAL_MS = 2000;

const WORDS = (
  'bread flour butter oven crust rye sourdough morning bakery fresh warm loaf roll honey seed oat wheat starter ' +
  'proof knead shape bake cool slice table window street market village family recipe season winter summer ' +
  'apple cherry almond walnut chocolate cinnamon sugar salt water yeast hour minute day week order pickup ' +
  'delivery price small large whole half dozen gift box card holiday closed open today tomorrow'
).split(' ');

function words(rand: () => number, n: number): string {
  return Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]!).join(' ');
}

const dirOf = (i: number) => i % DIRS;
function pagePath(i: number): string {
  const k = Math.floor(i / DIRS);
  return k === 0 ? `section-${dirOf(i)}/index.html` : `section-${dirOf(i)}/page-${k}.html`;
}

/** A link from page `from` to page `to`: absolute, relative, or a directory for an index page. */
function href(rand: () => number, from: number, to: number): string {
  const k = Math.floor(to / DIRS);
  const file = k === 0 ? '' : `page-${k}.html`;
  const r = rand();
  let url = r < 0.4 ? `/section-${dirOf(to)}/${file}` : dirOf(from) === dirOf(to) ? file || './' : `../section-${dirOf(to)}/${file}`;
  if (r > 0.93) url += '#main';
  else if (r > 0.88) url += '?from=nav';
  return url;
}

interface Site {
  /** Pages as lines, by index. */
  pages: string[][];
  deleted: number;
  linkers: number[];
  modified: number[];
  /** What the checks must find: path, line, code, the URL of a broken link. */
  planted: {
    baseLinks: Array<{ path: string; line: number; url: string }>;
    baseHtml: Array<{ path: string; line: number; code: string }>;
    toDeleted: Array<{ path: string; line: number; url: string }>;
    newLink: { path: string; line: number; url: string };
    newStray: { path: string; line: number; code: string };
  };
  files: number;
  pageBytes: number;
}

/** A page's lines; `extra` lines go at the end of <main>. Links go to any page but `avoid`. */
function page(rand: () => number, i: number, bytes: number, avoid: number): string[] {
  const d = dirOf(i);
  const other = () => {
    for (;;) {
      const j = Math.floor(rand() * PAGES);
      if (j !== i && j !== avoid) return j;
    }
  };
  const title = words(rand, 3);
  const lines = [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '  <meta charset="utf-8">',
    '  <meta name="viewport" content="width=device-width, initial-scale=1">',
    `  <title>Section ${d}, page ${i}: ${title}</title>`,
    `  <meta name="description" content="${words(rand, 12)}">`,
    '  <link rel="stylesheet" href="/assets/css/site.css">',
    `  <link rel="stylesheet" href="../assets/css/section-${d}.css">`,
    '  <link rel="icon" href="/assets/img/favicon.png">',
    '  <link rel="preconnect" href="https://fonts.example.com">',
    '  <script src="/assets/js/site.js" defer></script>',
    `  <script src="../assets/js/section-${d}.js" defer></script>`,
    '</head>',
    '<body>',
    '  <header class="site-header">',
    '    <a class="logo" href="/section-0/"><img src="/assets/img/logo.svg" alt="Example Bakery" width="120" height="40"></a>',
    '    <nav class="main-nav" aria-label="Main">',
    '      <ul>',
  ];
  for (let n = 0; n < 20; n++) {
    const j = other();
    lines.push(`        <li><a href="${href(rand, i, j)}">${words(rand, 2)}</a></li>`);
  }
  lines.push('      </ul>', '    </nav>', '  </header>', '  <main id="main">', `    <h1>${title}</h1>`);
  let size = lines.reduce((n, l) => n + l.length + 1, 0) + 400;
  const push = (line: string) => {
    lines.push(line);
    size += line.length + 1;
  };
  for (let s = 0; size < bytes; s++) {
    push(`    <section class="part" id="part-${s}">`);
    push(`      <h2>${words(rand, 2 + Math.floor(rand() * 4))}</h2>`);
    for (let p = 2 + Math.floor(rand() * 3); p > 0; p--) {
      const parts = [words(rand, 15 + Math.floor(rand() * 30))];
      for (let l = Math.floor(rand() * 3); l > 0; l--)
        parts.push(`<a href="${href(rand, i, other())}">${words(rand, 2)}</a> ${words(rand, 10 + Math.floor(rand() * 20))}`);
      if (rand() < 0.3) parts.push(`<strong>${words(rand, 3)}</strong> &amp; <em>${words(rand, 2)}</em>&nbsp;${words(rand, 5)}`);
      push(`      <p>${parts.join(' ')}.</p>`);
    }
    if (rand() < 0.6) {
      const ph = `img/photo-${Math.floor(rand() * PHOTOS)}`;
      push('      <figure>');
      push(`        <picture><source type="image/webp" srcset="${ph}.webp">`);
      push(
        `        <img src="${ph}.jpg" srcset="${ph}-480.jpg 480w, ${ph}-960.jpg 960w" sizes="(max-width: 600px) 480px, 960px" alt="${words(rand, 3)}" loading="lazy" width="960" height="640"></picture>`,
      );
      push(`        <figcaption>${words(rand, 6)}</figcaption>`);
      push('      </figure>');
    }
    if (rand() < 0.3) {
      push('      <ul class="list">');
      for (let n = 2 + Math.floor(rand() * 4); n > 0; n--) push(`        <li>${words(rand, 4 + Math.floor(rand() * 6))}</li>`);
      push('      </ul>');
    }
    if (rand() < 0.15) {
      push('      <table>');
      push('        <thead><tr><th>Item</th><th>Price</th><th>Days</th></tr></thead>');
      push('        <tbody>');
      for (let n = 2 + Math.floor(rand() * 5); n > 0; n--)
        push(`          <tr><td>${words(rand, 2)}</td><td>${(rand() * 20).toFixed(2)} &euro;</td><td>${words(rand, 1)}</td></tr>`);
      push('        </tbody>');
      push('      </table>');
    }
    push('    </section>');
  }
  lines.push(
    '  </main>',
    '  <footer class="site-footer">',
    `    <p>&copy; 2026 Example Bakery &middot; <a href="mailto:hello@example.com">hello@example.com</a> &middot; <a href="https://example.com/privacy">Privacy</a> &middot; <a href="#main">Top</a></p>`,
    '  </footer>',
    '  <!-- generated by bench/site-checks.ts -->',
    '</body>',
    '</html>',
  );
  return lines;
}

/** Inserts lines just before `</main>`; returns the 1-based line of the first. */
function insertInMain(lines: string[], ...added: string[]): number {
  const at = lines.indexOf('  </main>');
  lines.splice(at, 0, ...added);
  return at + 1;
}

async function put(root: string, path: string, content: string | Buffer): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), content);
}

const text = (lines: string[]) => `${lines.join('\n')}\n`;

async function generate(base: string, output: string): Promise<Site> {
  if (PAGES < 20) throw new Error(`BENCH_CHECKS_PAGES=${PAGES}: at least 20 pages`);
  const rand = prng(2026);
  const deleted = DIRS + (7 % DIRS); // a page of section-7 that is not its index
  const pages = Array.from({ length: PAGES }, (_, i) => page(rand, i, 5120 + Math.floor(rand() * 25 * 1024), deleted));

  // the order in which pages are picked: every page but the deleted one, shuffled by the seed
  const order = [...pages.keys()].filter((i) => i !== deleted);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const m = Math.round((PAGES * CHANGE_PCT) / 100);
  if (m < 3 || m + 4 > order.length)
    throw new Error(`BENCH_CHECKS_CHANGE_PCT=${CHANGE_PCT}: needs 3 to ${order.length - 4} modified pages, not ${m}`);
  const modified = order.slice(0, m);

  // the base's own breakage: 4 broken references (two pages of them modified later), 2 parse errors
  const planted: Site['planted'] = { baseLinks: [], baseHtml: [], toDeleted: [], newLink: null!, newStray: null! };
  for (const [n, i] of [order[1]!, order[m]!, order[m + 1]!, order[m + 2]!].entries()) {
    const url = n === 3 ? 'img/missing-photo.jpg' : `/section-${(n * 13) % DIRS}/retired-${n}.html`;
    const line = insertInMain(
      pages[i]!,
      n === 3
        ? `    <p><img src="${url}" alt="a photo no longer there" width="480" height="320"></p>`
        : `    <p>Our old offer is <a href="${url}">still linked here</a>.</p>`,
    );
    planted.baseLinks.push({ path: pagePath(i), line, url });
  }
  const stray = insertInMain(pages[order[2]!]!, '    <p>Opening hours change in winter.</span> Ask us.</p>');
  planted.baseHtml.push({ path: pagePath(order[2]!), line: stray, code: 'stray-end-tag' });
  const dup = insertInMain(pages[order[m + 3]!]!, '    <p><a href="/section-0/" class="more" class="button">Home</a></p>');
  planted.baseHtml.push({ path: pagePath(order[m + 3]!), line: dup, code: 'duplicate-attribute' });

  // 1 page in LINKER_EVERY links to the one to be deleted
  const linkers = [...pages.keys()].filter((i) => i % LINKER_EVERY === 13 && i !== deleted);
  for (const i of linkers) {
    const url = href(rand, i, deleted);
    planted.toDeleted.push({
      path: pagePath(i),
      line: insertInMain(pages[i]!, `    <p>See also <a href="${url}">our seasonal page</a>.</p>`),
      url,
    });
  }

  let files = 0;
  let pageBytes = 0;
  for (const [i, lines] of pages.entries()) {
    const t = text(lines);
    pageBytes += Buffer.byteLength(t);
    await put(base, pagePath(i), t);
    files++;
  }
  const assets: Array<[string, string | Buffer]> = [
    ['assets/css/site.css', `body { font: 16px/1.5 serif; }\n${'.c { margin: 0 auto; }\n'.repeat(200)}`],
    ['assets/js/site.js', `document.documentElement.classList.add('js');\n${'export const x = 1;\n'.repeat(100)}`],
    ['assets/img/logo.svg', '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><text y="30">Bakery</text></svg>\n'],
    ['assets/img/favicon.png', noise('favicon', 1024)],
  ];
  for (let d = 0; d < DIRS; d++) {
    assets.push([`assets/css/section-${d}.css`, `.section-${d} { color: #${(d * 4099).toString(16).slice(0, 3).padEnd(3, '0')}; }\n`]);
    assets.push([`assets/js/section-${d}.js`, `export const section = ${d};\n`]);
    for (let p = 0; p < PHOTOS; p++)
      for (const suffix of ['.jpg', '-480.jpg', '-960.jpg', '.webp'])
        assets.push([`section-${d}/img/photo-${p}${suffix}`, noise(`${d}/${p}${suffix}`, 1024 + Math.floor(rand() * 7168))]);
  }
  for (const [path, content] of assets) await put(base, path, content);
  files += assets.length;

  // the output: the modified pages, one of them with the new breakage, and the deleted page
  await cp(base, output, { recursive: true });
  for (const [n, i] of modified.entries()) {
    const lines = [...pages[i]!];
    const p = lines.findIndex((l, at) => at > lines.indexOf('  <main id="main">') && l.startsWith('      <p>'));
    lines[p] = `      <p>${words(rand, 20)} (updated).</p>`;
    insertInMain(lines, `    <p>New this week: <a href="${href(rand, i, order[m + 10] ?? order[0]!)}">${words(rand, 3)}</a>.</p>`);
    if (n === 0) {
      const url = `../section-${(i + 1) % DIRS}/no-such-page.html`;
      planted.newLink = { path: pagePath(i), line: insertInMain(lines, `    <p>Read <a href="${url}">the story behind it</a>.</p>`), url };
      planted.newStray = {
        path: pagePath(i),
        line: insertInMain(lines, '    <p>Closed from December 24 to 26.</span> See you after.</p>'),
        code: 'stray-end-tag',
      };
    }
    await put(output, pagePath(i), text(lines));
  }
  await rm(join(output, pagePath(deleted)));
  return { pages, deleted, linkers, modified, planted, files, pageBytes };
}

/** The introduced and preexisting findings must be exactly the planted ones. */
function verify(site: Site, results: ManifestCheck[]): void {
  const [html, links] = [results.find((r) => r.name === 'html'), results.find((r) => r.name === 'links')];
  if (!html || !links) throw new Error(`checkSite returned ${results.map((r) => r.name).join(', ')}, not html and links`);
  const p = site.planted;
  const expect = (check: ManifestCheck, introduced: number, preexisting: number) => {
    if (check.introduced !== introduced || check.preexisting !== preexisting || check.passed)
      throw new Error(
        `${check.name}: ${check.introduced} introduced and ${check.preexisting} preexisting (passed: ${check.passed}), planted ${introduced} and ${preexisting}: ${JSON.stringify(check.findings.slice(0, 20))}`,
      );
  };
  expect(html, 1, p.baseHtml.length);
  expect(links, 1 + p.toDeleted.length, p.baseLinks.length);
  const has = (check: ManifestCheck, what: { path: string; line: number; code?: string; url?: string }, introduced: boolean) => {
    const found = check.findings.some(
      (f) =>
        f.path === what.path &&
        f.line === what.line &&
        f.introduced === introduced &&
        f.code === (what.code ?? 'broken-link') &&
        (what.url === undefined || f.message.includes(JSON.stringify(what.url))),
    );
    if (!found) throw new Error(`${check.name}: no ${introduced ? 'introduced' : 'preexisting'} finding for ${JSON.stringify(what)}`);
  };
  has(html, p.newStray, true);
  for (const f of p.baseHtml) has(html, f, false);
  has(links, p.newLink, true);
  for (const f of p.baseLinks) has(links, f, false);
  // a manifest holds the first MAX_MANIFEST_FINDINGS: past that (a huge BENCH_CHECKS_PAGES) only the counts are checked
  for (const f of links.introduced + links.preexisting <= MAX_MANIFEST_FINDINGS ? p.toDeleted : []) {
    has(links, f, true);
    const finding = links.findings.find((x) => x.path === f.path && x.line === f.line)!;
    if (!finding.message.includes('was deleted by this change'))
      throw new Error(`links: ${JSON.stringify(finding)} does not name the deletion`);
  }
}

const scratch = await mkdtemp(join(tmpdir(), 'pw-bench-checks-'));
const series = {
  checks: [] as number[],
  baseline: [] as number[],
  ratio: [] as number[],
  reads: [] as number[],
  parsePage: [] as number[],
  parseLocations: [] as number[],
};
let site: Site;
let snapshotMs: number;
let changed: number;
let pageCount: number;
const busy = { before: loadavg()[0]!, after: 0 };
try {
  const baseDir = join(scratch, 'base');
  const outputDir = join(scratch, 'output');
  site = await generate(baseDir, outputDir);
  const snap = await timed(async () => {
    const [base, output] = [await snapshotTree(baseDir), await snapshotTree(outputDir)];
    return { base, output, changes: diffTrees(base, output) };
  });
  snapshotMs = snap.ms;
  const { base, output, changes } = snap.value;
  const expected = [...site.modified.map((i) => `modified ${pagePath(i)}`), `deleted ${pagePath(site.deleted)}`].sort();
  const got = changes.map((c) => `${c.change} ${c.path}`).sort();
  if (JSON.stringify(got) !== JSON.stringify(expected))
    throw new Error(`the diff is ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
  changed = changes.length;
  const pages = [...output].filter(([p, e]) => e.type === 'file' && isPage(p)).map(([p]) => p);
  pageCount = pages.length;
  console.log(
    `site: ${site.files} files, ${pageCount} pages in the output (${(site.pageBytes / 1024 / 1024).toFixed(1)} MiB of HTML in the base); ${site.modified.length} pages modified, 1 deleted (linked from ${site.linkers.length}); snapshots + diff ${snapshotMs.toFixed(0)} ms (given to checkSite, not timed with it)`,
  );

  const input: SiteCheckInput = {
    base,
    output,
    changes,
    outputDir,
    readBase: (path) => readFile(join(baseDir, path), 'utf8'),
    settings: { html: true, links: true },
  };
  const readAll = async (parseEach: (html: string) => void) => {
    const limit = pLimit(CONCURRENCY);
    await Promise.all(pages.map((p) => limit(async () => parseEach(await readFile(join(outputDir, p), 'utf8')))));
  };
  let nodes = 0;
  const baseline = () =>
    readAll((html) => {
      nodes += parse(html).childNodes.length;
    });
  // for the breakdown: every page checkSite parses (the output's, and the base of each modified one), in memory
  const inMemory = [
    ...(await Promise.all(pages.map((p) => readFile(join(outputDir, p), 'utf8')))),
    ...(await Promise.all(site.modified.map((i) => readFile(join(baseDir, pagePath(i)), 'utf8')))),
  ];
  const eachInMemory = async (fn: (html: string) => unknown) => {
    for (const html of inMemory) await fn(html);
  };

  // warm-up (page cache, JIT), and the checks
  verify(site, (await timed(() => checkSite(input))).value);
  await baseline();
  for (let run = 0; run < RUNS; run++) {
    const [c, b] = await alternating(
      run,
      () => timed(() => checkSite(input)),
      () => timed(baseline),
    );
    verify(site, c.value);
    series.checks.push(c.ms);
    series.baseline.push(b.ms);
    series.ratio.push(c.ms / b.ms);
    series.reads.push((await timed(() => readAll(() => undefined))).ms);
    series.parsePage.push((await timed(() => eachInMemory(parsePage))).ms);
    series.parseLocations.push(
      (await timed(() => eachInMemory((html) => parse(html, { sourceCodeLocationInfo: true, onParseError: () => {} })))).ms,
    );
  }
  if (nodes === 0) throw new Error('the baseline parsed nothing');
  busy.after = loadavg()[0]!;
} finally {
  await rm(scratch, { recursive: true, force: true });
}

const s = series;
printTable(`HTML and link checks of a ${pageCount}-page site, ${site.modified.length} pages modified and 1 deleted`, [
  ['checkSite (html + links), end to end', s.checks, 'ms'],
  ['baseline: read + parse5.parse of every page', s.baseline, 'ms'],
  ['checkSite / baseline', s.ratio, 'x'],
  [`for the breakdown: reads only (${CONCURRENCY} at a time)`, s.reads, 'ms'],
  [`parsePage of the ${pageCount + site.modified.length} pages, in memory`, s.parsePage, 'ms'],
  ['  of which parse5.parse with locations', s.parseLocations, 'ms'],
]);
const med = (v: number[]) => summarize(v).median;
const checksMs = med(s.checks);
const met = checksMs <= GOAL_MS;
const loaded = `load average ${busy.before.toFixed(1)} before, ${busy.after.toFixed(1)} after`;
console.log(`\n${loaded}; the slowest run ${Math.max(...s.checks).toFixed(0)} ms (goal per run <= ${GOAL_MS} ms)`);
await record('site-checks', {
  pages: pageCount,
  change_pct: CHANGE_PCT,
  modified: site.modified.length,
  deleted: 1,
  linkers: site.linkers.length,
  changed,
  files: site.files,
  page_bytes: site.pageBytes,
  runs: RUNS,
  snapshot_ms: snapshotMs,
  ms: summarizeAll(series),
  goal_ms: GOAL_MS,
  met,
  load_average: busy,
  machine: machine(),
});
headline(
  `HTML and link checks of a ${pageCount}-page site (${site.modified.length} modified, 1 deleted): checkSite ${checksMs.toFixed(0)} ms (goal <= ${GOAL_MS} ms: ${met ? 'met' : 'missed'}), ${med(s.ratio).toFixed(2)}x a read + parse5.parse of every page (${med(s.baseline).toFixed(0)} ms); parsePage ${med(s.parsePage).toFixed(0)} ms in memory, of which a parse with locations ${med(s.parseLocations).toFixed(0)} ms`,
);
