/**
 * The review page of one job (issue 17 item 5): server-rendered HTML, no framework, no script.
 * It shows the prompt, the agent's summary, the usage, the diff summary, the checks' findings, the output's preview
 * beside the base's, the exact commands to approve or roll back, and the rendered diff.
 *
 * Every URL on it is relative to the page (`review/style.css`, `output/`, `base/`, `diff`), so it
 * works wherever it is mounted: under the aggregated API path, behind `pagewright preview`'s
 * local server, or under a signed link (`/p/<token>/review`). The previews are iframes with
 * `sandbox="allow-scripts"`, and every preview response carries the same sandbox as a CSP
 * header (preview/headers.ts), so a preview runs in an opaque origin of its own whether it is
 * framed here or opened alone. Agent text is escaped by preview/html.ts.
 */
import { type Html, html } from './html.js';
import { renderDiff } from './diff-render.js';
import type { ReviewJob } from './review-job.js';

export interface ReviewDiff {
  /** diff.patch, or null when the job has none (yet). */
  text: string | null;
  /** The page read only the first part of a larger diff.patch. */
  cutAtBytes?: number;
}

const number = (n: number) => n.toLocaleString('en-US');

function commandBlock(title: string, lines: readonly string[], id: string): Html {
  return html`<div class="commands" id="${id}"><h3>${title}</h3>${
    lines.length === 0 ? html`<p class="none">None for this job.</p>` : lines.map((l) => html`<pre class="command"><code>${l}</code></pre>`)
  }</div>`;
}

function previewPane(kind: 'output' | 'base', title: string, version: string | undefined, missing: string): Html {
  if (!version) return html`<div class="pane" id="${kind}-pane"><h2>${title}</h2><p class="none">${missing}</p></div>`;
  return html`<div class="pane" id="${kind}-pane"><h2>${title} <span class="version" title="${version}">${version.slice(0, 12)}</span> <a href="${kind}/" target="_blank" rel="noopener noreferrer">open</a></h2><iframe src="${kind}/" sandbox="allow-scripts" referrerpolicy="no-referrer" title="${title} preview"></iframe></div>`;
}

function checksSection(checks: ReviewJob['checks']): Html {
  if (!checks || checks.length === 0) return html`<section id="checks"><h2>Checks</h2><p class="none">No checks ran.</p></section>`;
  const rows = checks.map(
    (c) =>
      html`<div class="check" id="check-${c.name}"><h3>${c.name}: <span class="${c.passed ? 'plus' : 'minus'}">${c.passed ? 'passed' : 'failed'}</span> · ${number(c.introduced)} introduced by the change · ${number(c.preexisting)} already in the base</h3>${
        c.findings.length === 0
          ? ''
          : html`<ul>${c.findings.map(
              (f) =>
                html`<li class="${f.introduced ? 'introduced' : 'preexisting'}"><code>${f.path}${f.line ? `:${f.line}` : ''}</code> ${f.message}${f.introduced ? '' : ' (already in the base)'}</li>`,
            )}</ul>${
              c.introduced + c.preexisting > c.findings.length
                ? html`<p class="none">The first ${number(c.findings.length)} of ${number(c.introduced + c.preexisting)}; every finding is in the job's manifest.json.</p>`
                : ''
            }`
      }</div>`,
  );
  return html`<section id="checks"><h2>Checks</h2>${rows}</section>`;
}

export function renderReviewPage(job: ReviewJob, diff: ReviewDiff): string {
  const s = job.diffSummary;
  const status = html`${job.phase ?? 'Pending'}${job.reason ? html` <span class="reason">(${job.reason})</span>` : ''}`;
  const diffBody =
    diff.text === null
      ? html`<p class="none" id="no-diff">No diff yet.</p>`
      : html`${diff.cutAtBytes ? html`<p class="cut">Only the first ${number(diff.cutAtBytes)} bytes of the diff are rendered here.</p>` : ''}${renderDiff(diff.text)}`;
  const page = html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Review ${job.namespace}/${job.name}</title>
<link rel="stylesheet" href="review/style.css">
</head>
<body>
<header>
<h1>Review <span class="job">${job.name}</span></h1>
<p class="meta">namespace <b>${job.namespace}</b> · site <b>${job.siteId}</b> · <span class="phase" id="phase">${status}</span></p>
</header>
<main>
<section id="prompt"><h2>Prompt</h2><pre class="text">${job.prompt}</pre></section>
<section id="summary"><h2>Summary</h2>${job.summary ? html`<pre class="text">${job.summary}</pre>` : html`<p class="none">No summary.</p>`}</section>
<section id="facts">
<div id="usage"><h2>Usage</h2>${
    job.usage
      ? html`<dl><dt>model calls</dt><dd>${number(job.usage.requests)}</dd><dt>input tokens</dt><dd>${number(job.usage.inputTokens)}</dd><dt>output tokens</dt><dd>${number(job.usage.outputTokens)}</dd></dl>`
      : html`<p class="none">Not reported.</p>`
  }</div>
<div id="diff-summary"><h2>Changes</h2>${
    s
      ? html`<dl><dt>files added</dt><dd>${number(s.filesAdded)}</dd><dt>files modified</dt><dd>${number(s.filesModified)}</dd><dt>files deleted</dt><dd>${number(s.filesDeleted)}</dd><dt>lines</dt><dd><span class="plus">+${number(s.linesAdded)}</span> <span class="minus">−${number(s.linesRemoved)}</span></dd></dl>${s.truncated ? html`<p class="cut">The diff was cut at the runner's size limit.</p>` : ''}`
      : html`<p class="none">No diff summary yet.</p>`
  }</div>
</section>
${checksSection(job.checks)}
<section id="previews">
${previewPane('output', 'Output', job.outputVersion, 'No output yet.')}
${previewPane('base', 'Base', job.baseVersion, 'No base version recorded.')}
</section>
<section id="actions"><h2>Approve or roll back</h2>
${commandBlock('Approve (publish this output)', job.commands.approve, 'approve')}
${commandBlock('Roll back (after publishing)', job.commands.rollback, 'rollback')}
</section>
<section id="diff"><h2>Diff <a href="diff">raw</a></h2>${diffBody}</section>
</main>
</body>
</html>
`;
  return page.value;
}

/** The page's only stylesheet, served from its own route (the page's CSP has no 'unsafe-inline'). */
export const REVIEW_CSS = `
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --add: #dafbe1; --del: #ffebe9; --addfg: #116329; --delfg: #82071e; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #f6f8fa; }
header { padding: 16px 24px; background: #fff; border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 20px; } h2 { font-size: 15px; margin: 0 0 8px; } h3 { font-size: 13px; margin: 0 0 6px; }
.meta { margin: 4px 0 0; color: var(--muted); }
main { padding: 16px 24px; display: grid; gap: 16px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, monospace; }
pre.text { font: inherit; white-space: pre-wrap; }
.none { color: var(--muted); margin: 0; }
#facts { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; margin: 0; } dt { color: var(--muted); } dd { margin: 0; font-variant-numeric: tabular-nums; }
.plus { color: var(--addfg); } .minus { color: var(--delfg); }
.cut { color: #9a6700; margin: 6px 0; }
#previews { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; padding: 12px; }
.pane h2 a { font-weight: normal; font-size: 12px; margin-left: 6px; }
.version { font: 12px ui-monospace, monospace; color: var(--muted); font-weight: normal; }
iframe { width: 100%; height: 420px; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
.commands { margin-top: 8px; } pre.command { background: #f6f8fa; border: 1px solid var(--line); border-radius: 4px; padding: 8px; margin-bottom: 6px; }
.file { border: 1px solid var(--line); border-radius: 4px; margin: 8px 0; padding: 0; overflow: hidden; }
.file h3 { background: #f6f8fa; border-bottom: 1px solid var(--line); padding: 6px 10px; margin: 0; font: 12px ui-monospace, monospace; }
.status { display: inline-block; padding: 0 6px; border-radius: 10px; font: 11px system-ui, sans-serif; background: #eaeef2; }
.status.added { background: var(--add); color: var(--addfg); } .status.deleted { background: var(--del); color: var(--delfg); }
.binary { margin: 6px 10px; color: var(--muted); }
table.hunk { width: 100%; border-collapse: collapse; font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, monospace; }
table.hunk th { text-align: left; font-weight: normal; color: var(--muted); background: #ddf4ff; padding: 2px 10px; }
td { padding: 0 6px; vertical-align: top; } td.no { width: 1%; color: var(--muted); text-align: right; user-select: none; } td.sign { width: 1%; user-select: none; }
td.code { white-space: pre-wrap; word-break: break-all; }
tr.add { background: var(--add); } tr.del { background: var(--del); } tr.meta td { color: var(--muted); }
@media (max-width: 900px) { #previews, #facts { grid-template-columns: 1fr; } }
`;
