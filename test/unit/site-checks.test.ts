/**
 * The HTML and link checks (runner/checks/) on real trees on disk, without a runner: what counts
 * as a parse error that changes rendering, how references resolve (as the preview serves a tree),
 * and the line between what the change broke (fails) and what the base had broken (reported).
 * The real node test (test/node/manager.test.ts) runs them in a job through the real Codex CLI.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { expect } from 'chai';
import { CheckSettings } from '../../common/schemas.js';
import { parsePage, srcsetUrls } from '../../runner/checks/page.js';
import { failedChecks, repairPrompt } from '../../runner/checks/repair.js';
import { checkSite, resolveReference, resolves } from '../../runner/checks/site-checks.js';
import { diffTrees, snapshotTree } from '../../runner/tree.js';

const DOC = '<!DOCTYPE html><html><head><title>t</title></head><body>';

async function tree(root: string, files: Record<string, string>): Promise<void> {
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
}

describe('site checks', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-checks-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function run(base: Record<string, string>, output: Record<string, string>, settings: Partial<CheckSettings> = {}) {
    await tree(join(dir, 'base'), base);
    await tree(join(dir, 'out'), output);
    const b = await snapshotTree(join(dir, 'base'));
    const o = await snapshotTree(join(dir, 'out'));
    return checkSite({
      base: b,
      output: o,
      changes: diffTrees(b, o),
      outputDir: join(dir, 'out'),
      readBase: (p) => import('node:fs/promises').then((fs) => fs.readFile(join(dir, 'base', p), 'utf8')),
      settings: CheckSettings.parse(settings),
    });
  }

  describe('parsing a page', () => {
    it('reports parse errors that change the DOM, with their line, and not those that render the same', async () => {
      const page = parsePage(`${DOC}\n<div/>\n<p>a &copy 2026</p>\n</span>\n<a href=x class=y class=z>k</a>\n</body></html>`);
      const codes = page.problems.map((p) => [p.code, p.line]);
      expect(codes).to.deep.include(['non-void-html-element-start-tag-with-trailing-solidus', 2]);
      expect(codes).to.deep.include(['stray-end-tag', 4]);
      expect(codes).to.deep.include(['duplicate-attribute', 5]);
      expect(page.problems.map((p) => p.code)).not.to.include('missing-semicolon-after-character-reference');
      // <div/> is reported once, as itself, not again as an element never closed
      expect(page.problems.filter((p) => p.line === 2)).to.have.length(1);
    });

    it('finds the tree errors parse5 does not report: stray and misnested end tags, elements never closed', async () => {
      const html = `${DOC}\n<div><p>x</div></section>\n<b><i>x</b></i>\n<ul><li>a<li>b</ul><p>c<br></br>\n<template><span>t</span></template></body></html>`;
      // what parse5 itself reports of this page: none of the three (the reason end tags are
      // recorded). If a parse5 upgrade stops calling Parser.onEndTag, this finds nothing and fails
      const { parse } = await import('parse5');
      const own: string[] = [];
      parse(html, { onParseError: (e) => own.push(e.code) });
      expect(own).to.deep.equal([]);
      const codes = parsePage(html).problems.map((p) => `${p.code}@${p.line}`);
      expect(codes).to.deep.equal(['stray-end-tag@2', 'element-not-closed@3', 'stray-end-tag@3']);
    });

    it('reports quirks mode once for a page without a doctype, and nothing for a clean page', async () => {
      expect(parsePage('<html><body><p>hi</p></body></html>').problems.map((p) => p.code)).to.deep.equal(['quirks-mode']);
      expect(parsePage(`${DOC}<p>hi</p></body></html>`).problems).to.deep.equal([]);
      // a legacy doctype that keeps standards mode is not quirks
      const legacy =
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd"><p>x</p>';
      expect(parsePage(legacy).problems.map((p) => p.code)).not.to.include('quirks-mode');
    });

    it('finds the references of links, images, srcsets, scripts, stylesheets and media, not of templates', async () => {
      const page = parsePage(
        `${DOC}<link rel=stylesheet href="s.css"><script src="a.js"></script>
<img src="i.png" srcset="i-1x.png 1x, i,2x.png 2x"><video src="v.mp4" poster="p.jpg"></video>
<template><a href="in-template.html">x</a></template><a href="a.html">a</a></body></html>`,
      );
      expect(page.references.map((r) => `${r.attribute}=${r.url}@${r.line}`)).to.deep.equal([
        'link href=s.css@1',
        'script src=a.js@1',
        'img src=i.png@2',
        'img srcset=i-1x.png@2',
        'img srcset=i,2x.png@2',
        'video src=v.mp4@2',
        'video poster=p.jpg@2',
        'a href=a.html@3',
      ]);
    });

    it('reads srcset as HTML does: commas inside URLs, trailing commas, descriptors with parentheses', () => {
      expect(srcsetUrls('a.png 1x,b.png 2x')).to.deep.equal(['a.png', 'b.png']);
      expect(srcsetUrls(' a.png, b.png,  ,c.png 100w')).to.deep.equal(['a.png', 'b.png', 'c.png']);
      expect(srcsetUrls('img,1.png 1x, img,2.png 2x')).to.deep.equal(['img,1.png', 'img,2.png']);
    });

    it('parses a page nested 50,000 deep without overflowing the stack', async () => {
      const deep = `${DOC}${'<div>'.repeat(50_000)}x${'</div>'.repeat(50_000)}</body></html>`;
      expect(parsePage(deep).problems).to.deep.equal([]);
    });
  });

  describe('resolving a reference', () => {
    it('resolves relative, absolute and dot paths from the page, and drops queries and fragments', () => {
      expect(resolveReference('blog/post.html', 'img/a.png', null)).to.equal('blog/img/a.png');
      expect(resolveReference('blog/post.html', '../about.html?x=1#top', null)).to.equal('about.html');
      expect(resolveReference('blog/post.html', '/css/site.css', null)).to.equal('css/site.css');
      expect(resolveReference('blog/post.html', '/', null)).to.equal('');
      expect(resolveReference('a b/p.html', 'my%20pic.png', null)).to.equal('a b/my pic.png');
      expect(resolveReference('p.html', '../../../../etc/passwd', null)).to.equal('etc/passwd');
    });

    it('leaves external URLs, other schemes and self references alone, and follows <base>', () => {
      for (const url of [
        'https://example.com/x',
        '//cdn.example.com/a.js',
        'mailto:a@b.c',
        'data:image/png;base64,AA',
        'javascript:void(0)',
        '#top',
        '?q=1',
        '',
      ])
        expect(resolveReference('index.html', url, null), url).to.equal(null);
      expect(resolveReference('deep/page.html', 'x.html', '/docs/')).to.equal('docs/x.html');
      expect(resolveReference('deep/page.html', 'x.html', 'https://elsewhere.example/')).to.equal(null);
    });

    it('finds a file, or a directory with an index.html, with or without its slash', async () => {
      await tree(join(dir, 'r'), { 'index.html': '', 'docs/index.html': '', 'img/a.png': '', 'empty/x.txt': '' });
      const t = await snapshotTree(join(dir, 'r'));
      expect(['', 'docs', 'docs/', 'img/a.png'].map((p) => resolves(t, p))).to.deep.equal([true, true, true, true]);
      expect(['img', 'empty/', 'missing.html', 'img/a.png/'].map((p) => resolves(t, p))).to.deep.equal([false, false, false, false]);
    });
  });

  describe('what the change broke against what was broken', () => {
    it('fails a link the change broke in a page it edited, and names the line', async () => {
      const [, links] = await run(
        { 'index.html': `${DOC}<a href="about.html">About</a></body></html>`, 'about.html': `${DOC}</body></html>` },
        { 'index.html': `${DOC}\n<a href="abuot.html">About</a></body></html>`, 'about.html': `${DOC}</body></html>` },
      );
      expect(links).to.include({ name: 'links', passed: false, introduced: 1, preexisting: 0 });
      expect(links!.findings[0]).to.include({ path: 'index.html', line: 2, code: 'broken-link', introduced: true });
      expect(links!.findings[0]!.message).to.contain('"abuot.html" does not resolve');
    });

    it('fails links of untouched pages to a file the change deleted, saying so', async () => {
      const [, links] = await run(
        { 'index.html': `${DOC}<img src="logo.png"></body></html>`, 'logo.png': 'png' },
        { 'index.html': `${DOC}<img src="logo.png"></body></html>` },
      );
      expect(links).to.include({ passed: false, introduced: 1 });
      expect(links!.findings[0]!.message).to.contain('was deleted by this change');
    });

    it('reports links already broken in the base without failing, in touched and untouched pages', async () => {
      const base = {
        'index.html': `${DOC}<a href="gone.html">old</a><p>v1</p></body></html>`,
        'other.html': `${DOC}<script src="missing.js"></script></body></html>`,
      };
      const [html, links] = await run(base, { ...base, 'index.html': `${DOC}<a href="gone.html">old</a><p>v2</p></body></html>` });
      expect(links).to.include({ passed: true, introduced: 0, preexisting: 2 });
      expect(links!.findings.every((f) => !f.introduced)).to.equal(true);
      expect(html).to.include({ passed: true, introduced: 0, preexisting: 0 });
    });

    it('fails a parse error the change added, not one the page already had', async () => {
      const before = `${DOC}<div/><p>x</p></body></html>`;
      const [html] = await run(
        { 'a.html': before, 'b.html': before },
        { 'a.html': before, 'b.html': `${DOC}<div/><p>y</p><span/></body></html>` },
      );
      expect(html).to.include({ passed: false, introduced: 1, preexisting: 2 });
      expect(html!.findings[0]).to.include({
        path: 'b.html',
        introduced: true,
        code: 'non-void-html-element-start-tag-with-trailing-solidus',
      });
    });

    it('fails everything found in a page the change added, and honours the switches', async () => {
      const out = { 'index.html': `${DOC}</body></html>`, 'new.html': '<p>no doctype <a href="nope.html">x</a>' };
      const [html, links] = await run({ 'index.html': `${DOC}</body></html>` }, out);
      expect(html).to.include({ passed: false, introduced: 1 });
      expect(links).to.include({ passed: false, introduced: 1 });
      expect((await run({}, out, { html: false })).map((c) => c.name)).to.deep.equal(['links']);
      expect(await run({}, out, { html: false, links: false })).to.deep.equal([]);
    });
  });

  describe('the repair prompt', () => {
    it('lists only what the change introduced, with file and line, the site command by name, and counts the rest', () => {
      const f = (path: string, introduced: boolean, line?: number) => ({
        path,
        ...(line ? { line } : {}),
        code: 'broken-link',
        message: `m ${path}`,
        introduced,
      });
      const checks = [
        {
          name: 'links' as const,
          passed: false,
          introduced: 40,
          preexisting: 1,
          findings: [...Array.from({ length: 40 }, (_, i) => f(`p${i}.html`, true, i + 1)), f('old.html', false, 3)],
        },
        { name: 'html' as const, passed: true, introduced: 0, preexisting: 2, findings: [f('x.html', false, 1)] },
        {
          name: 'command' as const,
          passed: false,
          introduced: 1,
          preexisting: 0,
          findings: [{ path: '', code: 'command-failed', message: '"npm run build" exited with code 1', introduced: true }],
        },
      ];
      expect(failedChecks(checks).map((c) => c.name)).to.deep.equal(['links', 'command']);
      const prompt = repairPrompt(checks);
      expect(prompt).to.contain('failed (links, command): your change introduced 41 problem(s)');
      expect(prompt).to.contain('- [links] p0.html:1: m p0.html');
      expect(prompt).not.to.contain('old.html');
      expect(prompt).not.to.contain('x.html');
      expect(prompt).to.contain('and 25 more');
      expect(prompt).to.contain(`- [command] the site's check command: "npm run build" exited with code 1`);
      expect(prompt).to.contain('the same JSON final message');
    });
  });
});
