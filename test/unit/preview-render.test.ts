/**
 * The preview's pure parts: HTML escaping, the diff renderer, the review page's markup, the
 * request-path check, and what the review page reads of a PagewrightJob.
 */
import { expect } from 'chai';
import { parseDiff, renderDiff } from '../../preview/diff-render.js';
import { escapeHtml, html } from '../../preview/html.js';
import { reviewJobOf } from '../../preview/resolvers.js';
import type { ReviewJob } from '../../preview/review-job.js';
import { renderReviewPage } from '../../preview/review-page.js';
import { treePath } from '../../preview/tree-path.js';

const HOSTILE = `<script>alert(1)</script><img src=x onerror="alert(2)">'&"`;
const V1 = '1'.repeat(64);
const V2 = '2'.repeat(64);

const DIFF = `diff --git a/index.html b/index.html
index 1111111..2222222 100644
--- a/index.html
+++ b/index.html
@@ -1,4 +1,4 @@
 <h1>Harbor Lane</h1>
-<p>Open daily</p>
+<p>Closed Dec 24&ndash;26 <script>steal()</script></p>
 <footer>
 </footer>
diff --git a/news/holidays.html b/news/holidays.html
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/news/holidays.html
@@ -0,0 +1,2 @@
+<h2>Holidays</h2>
+<p>See you on the 27th</p>
diff --git a/old.txt b/old.txt
deleted file mode 100644
index 4444444..0000000
--- a/old.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
\\ No newline at end of file
diff --git a/logo.png b/logo.png
index 5555555..6666666 100644
Binary files a/logo.png and b/logo.png differ
# binary: a/logo.png 120 bytes, sha256 aa11, b/logo.png 96 bytes, sha256 bb22
diff --git a/<img src=x onerror=alert(3)>.html b/<img src=x onerror=alert(3)>.html
new file mode 100644
--- /dev/null
+++ b/<img src=x onerror=alert(3)>.html
@@ -0,0 +1 @@
+hi
`;

function job(overrides: Partial<ReviewJob> = {}): ReviewJob {
  return {
    uid: 'uid-1',
    name: 'bakery-holiday-hours',
    namespace: 'pagewright',
    siteId: 'harbor-lane-bakery',
    prompt: 'Add the holiday hours',
    phase: 'Succeeded',
    summary: 'Added a notice',
    usage: { requests: 3, inputTokens: 12345, outputTokens: 678 },
    baseVersion: V1,
    outputVersion: V2,
    diffSummary: { filesAdded: 2, filesModified: 1, filesDeleted: 1, linesAdded: 4, linesRemoved: 2, truncated: false },
    commands: {
      approve: ['pagewright approve bakery-holiday-hours -n pagewright'],
      rollback: ['pagewright sites rollback harbor-lane-bakery -n pagewright'],
    },
    ...overrides,
  };
}

describe('preview rendering', () => {
  describe('escaping (preview/html.ts)', () => {
    it('escapes the five characters that matter in content and quoted attributes', () => {
      expect(escapeHtml(HOSTILE)).to.equal(
        '&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;&#39;&amp;&quot;',
      );
    });

    it('escapes every interpolated value, in arrays too, and keeps Html as it is', () => {
      const inner = html`<b>${HOSTILE}</b>`;
      const out = html`<p title="${HOSTILE}">${HOSTILE}${[HOSTILE, inner]}${inner}</p>`.value;
      expect(out).not.to.include('<script>');
      expect(out).not.to.include('<img');
      expect(out).not.to.match(/title="[^"]*"[^>]*"/); // the attribute cannot be closed early
      expect(out.match(/<b>/g)).to.have.length(2);
    });

    it('renders nothing for null, undefined and booleans (conditional parts)', () => {
      expect(html`${null}${undefined}${false}${true}${0}`.value).to.equal('0');
    });
  });

  describe('the diff (preview/diff-render.ts)', () => {
    it('parses each file with its status and path, and numbers the lines', () => {
      const files = parseDiff(DIFF);
      expect(files.map((f) => [f.status, f.path])).to.deep.equal([
        ['modified', 'index.html'],
        ['added', 'news/holidays.html'],
        ['deleted', 'old.txt'],
        ['binary', 'logo.png'],
        ['added', '<img src=x onerror=alert(3)>.html'],
      ]);
      const lines = files[0]!.hunks[0]!.lines;
      expect(lines.map((l) => [l.kind, l.oldNo, l.newNo])).to.deep.equal([
        ['ctx', 1, 1],
        ['del', 2, undefined],
        ['add', undefined, 2],
        ['ctx', 3, 3],
        ['ctx', 4, 4],
      ]);
      expect(files[2]!.hunks[0]!.lines.at(-1)).to.deep.equal({ kind: 'meta', text: '\\ No newline at end of file' });
      // a binary file: the runner's line with each side's size and hash, shown as it is
      expect(files[3]!.binary).to.equal('a/logo.png 120 bytes, sha256 aa11, b/logo.png 96 bytes, sha256 bb22');
      expect(renderDiff(DIFF).value).to.include(
        'Binary file: not shown. a/logo.png 120 bytes, sha256 aa11, b/logo.png 96 bytes, sha256 bb22',
      );
    });

    it('renders +/- rows with their classes and escapes the agent text and file names', () => {
      const out = renderDiff(DIFF).value;
      expect(out).to.include(
        '<tr class="add"><td class="no"></td><td class="no">2</td><td class="sign">+</td><td class="code">&lt;p&gt;Closed Dec 24&amp;ndash;26 &lt;script&gt;steal()&lt;/script&gt;&lt;/p&gt;</td></tr>',
      );
      expect(out).to.include(
        '<tr class="del"><td class="no">2</td><td class="no"></td><td class="sign">-</td><td class="code">&lt;p&gt;Open daily&lt;/p&gt;</td></tr>',
      );
      expect(out).to.include('data-path="&lt;img src=x onerror=alert(3)&gt;.html"');
      expect(out).to.include('Binary file: not shown.');
      expect(out).not.to.match(/<script|<img/);
      expect(out.match(/<section class="file"/g)).to.have.length(5);
    });

    it('keeps the files before a file cut mid-hunk, and shows the cut one as raw lines', () => {
      const cut = `${DIFF}diff --git a/big.html b/big.html\n--- a/big.html\n+++ b/big.html\n@@ -1,9 +1,9 @@\n-one\n+uno\n`;
      const files = parseDiff(cut);
      expect(files).to.have.length(6);
      expect(files[5]!.raw?.map((l) => l.kind)).to.deep.equal(['meta', 'meta', 'meta', 'meta', 'del', 'add']);
      expect(renderDiff(cut).value).to.include('<table class="hunk raw">');
    });

    it('stops rendering at maxLines and says how many lines it left out', () => {
      const out = renderDiff(DIFF, { maxLines: 3 }).value;
      expect(out.match(/<tr class="(add|del|ctx|meta)"/g)).to.have.length(3);
      expect(out).to.include('more lines are not shown here');
    });

    it('says so when the diff is empty', () => {
      expect(renderDiff('').value).to.include('The diff is empty');
    });
  });

  describe('the review page (preview/review-page.ts)', () => {
    it('escapes the prompt, the summary, the reason and the commands, and has no script', () => {
      const page = renderReviewPage(
        job({ prompt: HOSTILE, summary: HOSTILE, reason: HOSTILE, commands: { approve: [HOSTILE], rollback: [] } }),
        { text: DIFF },
      );
      expect(page).not.to.match(/<script|<img|onerror="/);
      expect(page.match(/&lt;script&gt;alert\(1\)/g)?.length).to.be.greaterThanOrEqual(4);
    });

    it("lists the checks' findings, introduced apart from those already in the base, escaped (the agent writes paths and pages)", () => {
      const finding = (introduced: boolean, path: string) => ({
        path,
        line: 4,
        code: 'broken-link',
        message: `a href ${HOSTILE}`,
        introduced,
      });
      const page = renderReviewPage(
        job({
          checks: [
            {
              name: 'links',
              passed: false,
              introduced: 1,
              preexisting: 11,
              findings: [finding(true, HOSTILE), finding(false, 'old.html')],
            },
            { name: 'html', passed: true, introduced: 0, preexisting: 0, findings: [] },
          ],
        }),
        { text: DIFF },
      );
      expect(page).to.include(
        '<div class="check" id="check-links"><h3>links: <span class="minus">failed</span> · 1 introduced by the change · 11 already in the base',
      );
      expect(page).to.include('<li class="preexisting"><code>old.html:4</code>');
      expect(page).to.include("The first 2 of 12; every finding is in the job's manifest.json.");
      expect(page).to.include('html: <span class="plus">passed</span>');
      expect(page).not.to.match(/<script|<img|onerror="/);
      expect(renderReviewPage(job(), { text: DIFF })).to.include('No checks ran.');
    });

    it('frames both previews sandboxed, with relative URLs only', () => {
      const page = renderReviewPage(job(), { text: DIFF });
      expect(page).to.include('<iframe src="output/" sandbox="allow-scripts"');
      expect(page).to.include('<iframe src="base/" sandbox="allow-scripts"');
      expect(page).to.include('<link rel="stylesheet" href="review/style.css">');
      expect(page).not.to.match(/(href|src)="(\/|https?:)/);
      expect(page).not.to.match(/ style=/);
    });

    it('says what is missing: no diff yet, no output yet, no base', () => {
      const page = renderReviewPage(job({ outputVersion: undefined, baseVersion: undefined, usage: undefined, diffSummary: undefined }), {
        text: null,
      });
      expect(page).to.include('No diff yet.');
      expect(page).to.include('No output yet.');
      expect(page).to.include('No base version recorded.');
      expect(page).not.to.include('<iframe');
    });
  });

  describe('the request path check (preview/tree-path.ts)', () => {
    it('passes plain paths, decoded once', () => {
      expect(treePath('/')).to.equal('/');
      expect(treePath('/about/index.html')).to.equal('/about/index.html');
      expect(treePath('/caf%C3%A9%20menu.html')).to.equal('/café menu.html');
      // double encoding decodes to a literal "%2e%2e" file name, which is not a traversal
      expect(treePath('/%252e%252e/x')).to.equal('/%2e%2e/x');
    });

    it('refuses `..` and `.` in every spelling, encoded slashes and backslashes, NUL and bad encodings', () => {
      for (const bad of [
        '/../etc/passwd',
        '/a/../../x',
        '/..',
        '/%2e%2e/x',
        '/%2E%2e/x',
        '/.%2e/x',
        '/a/%2e/b',
        '/..%2fetc',
        '/a%2F..%2F..%2Fx',
        '/..%5c..%5cx',
        '/..\\..\\x',
        '/a\\b',
        '/x%00.html',
        '/%E0%A4%A',
        'relative',
      ]) {
        expect(treePath(bad), bad).to.equal(null);
      }
    });
  });

  describe('a PagewrightJob as the review page reads it (preview/resolvers.ts)', () => {
    const raw = {
      apiVersion: 'pagewright.dev/v1alpha1',
      kind: 'PagewrightJob',
      metadata: { name: 'j1', namespace: 'ns', uid: 'u-1', resourceVersion: '1' },
      spec: { siteId: 'site-a', prompt: 'do it' },
      status: {
        phase: 'Succeeded',
        jobId: 'ns-j1-u-1',
        baseVersion: V1,
        outputVersion: V2,
        summary: 'done',
        usage: { requests: 1, inputTokens: 2, outputTokens: 3 },
        diffSummary: { filesAdded: 0, filesModified: 1, filesDeleted: 0, linesAdded: 1, linesRemoved: 1, truncated: false },
      },
    };

    it('takes storage uid from status.jobId, the versions, the diff summary and builds the commands', () => {
      const j = reviewJobOf(raw);
      expect(j).to.deep.include({ uid: 'ns-j1-u-1', siteId: 'site-a', phase: 'Succeeded', baseVersion: V1, outputVersion: V2 });
      expect(j.diffSummary?.filesModified).to.equal(1);
      expect(j.commands.approve[0]).to.equal('pagewright approve j1 -n ns');
      expect(j.commands.approve[1]).to.equal(`kubectl -n ns patch pwj j1 --type=merge -p '{"spec":{"publish":true}}'`);
      expect(j.commands.rollback).to.deep.equal([
        'pagewright sites rollback site-a -n ns',
        "echo '{}' | kubectl create --raw /apis/review.pagewright.dev/v1alpha1/namespaces/ns/sites/site-a/rollback -f -",
      ]);
    });

    it('a queued job: the metadata uid, no versions, no diff summary', () => {
      const j = reviewJobOf({ ...raw, status: {} });
      expect(j.uid).to.equal('u-1');
      expect(j).not.to.have.any.keys('outputVersion', 'baseVersion', 'diffSummary', 'phase');
    });
  });
});
