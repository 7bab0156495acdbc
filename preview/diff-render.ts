/**
 * A job's diff.patch (unified, git style, written by the runner) as HTML for the review page:
 * one section per file with its status and path, each hunk a table of numbered lines styled
 * by kind. Parsing is jsdiff's parsePatch (`diff`), file by file: a diff cut at the runner's
 * limit usually ends inside a hunk, which parsePatch refuses, so a file that does not parse is
 * shown as its raw lines (still escaped and styled by their first character) and the files
 * before it keep their rendering. Everything in the diff is the agent's and is escaped.
 */
import { parsePatch, type StructuredPatch } from 'diff';
import { type Html, html } from './html.js';

type FileStatus = 'added' | 'deleted' | 'modified' | 'renamed' | 'binary';

interface DiffLine {
  kind: 'add' | 'del' | 'ctx' | 'meta';
  text: string;
  /** Line numbers in the old and the new file, where the line has one. */
  oldNo?: number;
  newNo?: number;
}

export interface DiffFile {
  path: string;
  /** Renames: where it came from. */
  from?: string;
  status: FileStatus;
  hunks: Array<{ header: string; lines: DiffLine[] }>;
  /** The file's text did not parse as a unified diff (cut short, or not a diff): its lines as they are. */
  raw?: DiffLine[];
  /** Binary files: the runner's `# binary:` line, each side's size and sha256. */
  binary?: string;
}

/** Splits before each `diff --git` header, so one broken file does not take the others with it. */
function fileChunks(text: string): string[] {
  const starts = [...text.matchAll(/^diff --git /gm)].map((m) => m.index);
  if (starts.length === 0) return text.trim() === '' ? [] : [text];
  const chunks: string[] = [];
  if (starts[0]! > 0 && text.slice(0, starts[0]).trim() !== '') chunks.push(text.slice(0, starts[0]));
  starts.forEach((start, i) => {
    chunks.push(text.slice(start, starts[i + 1] ?? text.length));
  });
  return chunks;
}

const DEV_NULL = '/dev/null';

function stripPrefix(name: string | undefined, prefix: 'a/' | 'b/'): string | undefined {
  if (name === undefined || name === DEV_NULL) return name;
  return name.startsWith(prefix) ? name.slice(2) : name;
}

/** The path a `diff --git a/X b/Y` header names, for a file without ---/+++ lines (a binary one). */
function gitHeaderPath(chunk: string): string | undefined {
  const first = chunk.split('\n', 1)[0] ?? '';
  const m = /^diff --git a\/(.*) b\/(.*)$/.exec(first);
  return m?.[2];
}

function toFile(patch: StructuredPatch, chunk: string): DiffFile {
  const prefixed = patch.isGit || (patch.oldFileName?.startsWith('a/') && patch.newFileName?.startsWith('b/'));
  const oldName = prefixed ? stripPrefix(patch.oldFileName, 'a/') : patch.oldFileName;
  const newName = prefixed ? stripPrefix(patch.newFileName, 'b/') : patch.newFileName;
  const added = patch.isCreate || oldName === DEV_NULL;
  const deleted = patch.isDelete || newName === DEV_NULL;
  const path = (deleted ? oldName : newName) ?? oldName ?? gitHeaderPath(chunk) ?? '(unnamed)';
  const status: FileStatus = patch.isBinary
    ? 'binary'
    : added
      ? 'added'
      : deleted
        ? 'deleted'
        : patch.isRename || (oldName !== undefined && newName !== undefined && oldName !== newName)
          ? 'renamed'
          : 'modified';
  const hunks = patch.hunks.map((h) => {
    let oldNo = h.oldStart;
    let newNo = h.newStart;
    const lines: DiffLine[] = h.lines.map((line) => {
      const sign = line[0];
      const text = line.slice(1);
      if (sign === '+') return { kind: 'add', text, newNo: newNo++ };
      if (sign === '-') return { kind: 'del', text, oldNo: oldNo++ };
      if (sign === '\\') return { kind: 'meta', text: line };
      return { kind: 'ctx', text, oldNo: oldNo++, newNo: newNo++ };
    });
    return { header: `@@ -${h.oldStart},${h.oldLines} +${h.newStart},${h.newLines} @@`, lines };
  });
  const binary = status === 'binary' ? /^# binary: (.*)$/m.exec(chunk)?.[1] : undefined;
  return { path, ...(status === 'renamed' && oldName ? { from: oldName } : {}), status, hunks, ...(binary ? { binary } : {}) };
}

function rawLines(chunk: string): DiffLine[] {
  return chunk
    .replace(/\n$/, '')
    .split('\n')
    .map((line) => {
      if (line.startsWith('+') && !line.startsWith('+++')) return { kind: 'add', text: line.slice(1) };
      if (line.startsWith('-') && !line.startsWith('---')) return { kind: 'del', text: line.slice(1) };
      return { kind: 'meta', text: line };
    });
}

/** The files of a unified diff. */
export function parseDiff(text: string): DiffFile[] {
  const files: DiffFile[] = [];
  for (const chunk of fileChunks(text)) {
    let patches: StructuredPatch[];
    try {
      patches = parsePatch(chunk);
    } catch {
      files.push({ path: gitHeaderPath(chunk) ?? '(unparsed)', status: 'modified', hunks: [], raw: rawLines(chunk) });
      continue;
    }
    for (const p of patches) {
      // text before the first header (a note, a blank line) parses as a nameless patch without hunks
      if (p.oldFileName === undefined && p.newFileName === undefined && p.hunks.length === 0 && !p.isGit) {
        if (chunk.trim() !== '') files.push({ path: '(notes)', status: 'modified', hunks: [], raw: rawLines(chunk) });
        continue;
      }
      files.push(toFile(p, chunk));
    }
  }
  return files;
}

const SIGN: Record<DiffLine['kind'], string> = { add: '+', del: '-', ctx: ' ', meta: '' };

function lineRow(line: DiffLine): Html {
  return html`<tr class="${line.kind}"><td class="no">${line.oldNo}</td><td class="no">${line.newNo}</td><td class="sign">${SIGN[line.kind]}</td><td class="code">${line.text}</td></tr>`;
}

export interface RenderDiffOptions {
  /** Lines rendered at most, over all files; the rest is counted and left to the raw diff. */
  maxLines?: number;
}

/** The diff as HTML sections, one per file, with `data-path` and `data-status` for tests and styles. */
export function renderDiff(text: string, opts: RenderDiffOptions = {}): Html {
  const maxLines = opts.maxLines ?? 20_000;
  const files = parseDiff(text);
  if (files.length === 0) return html`<p class="empty">The diff is empty: no text file changed.</p>`;
  let budget = maxLines;
  let hidden = 0;
  const take = (lines: DiffLine[]): DiffLine[] => {
    const shown = lines.slice(0, Math.max(0, budget));
    budget -= shown.length;
    hidden += lines.length - shown.length;
    return shown;
  };
  const sections = files.map((f) => {
    const title = f.from ? html`${f.from} → ${f.path}` : html`${f.path}`;
    const body = f.raw
      ? html`<table class="hunk raw"><tbody>${take(f.raw).map(lineRow)}</tbody></table>`
      : f.status === 'binary'
        ? html`<p class="binary">Binary file: not shown.${f.binary ? html` ${f.binary}` : ''}</p>`
        : f.hunks.map(
            (h) =>
              html`<table class="hunk"><thead><tr><th colspan="4">${h.header}</th></tr></thead><tbody>${take(h.lines).map(lineRow)}</tbody></table>`,
          );
    return html`<section class="file" data-path="${f.path}" data-status="${f.status}"><h3><span class="status ${f.status}">${f.status}</span> <span class="path">${title}</span></h3>${body}</section>`;
  });
  const note = hidden > 0 ? html`<p class="cut">${hidden} more lines are not shown here: see the raw diff.</p>` : '';
  return html`${sections}${note}`;
}
