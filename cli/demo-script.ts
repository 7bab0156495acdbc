/**
 * The offline demo's scripted model: it reads index.html through codex's shell tool, answers
 * with a real apply_patch that adds a visible note carrying the prompt right after the opening
 * <main> (or <body>) tag, and ends with the structured final message. On a site without
 * index.html it adds PAGEWRIGHT-NOTE.md instead. Works on any site; edits are scripted, not smart.
 */
import type { ModelTurn, TurnContext } from './model-server.js';

export function demoScript(ctx: TurnContext): ModelTurn {
  const note = oneLine(ctx.prompt);
  if (ctx.round === 0) {
    return { kind: 'tools', calls: [{ type: 'shell', cmd: 'cat index.html' }] };
  }
  if (ctx.round === 1) {
    const html = commandOutput(ctx.toolOutputs[0] ?? '');
    const anchor =
      html?.split('\n').find((l) => /<main\b[^>]*>\s*$/i.test(l)) ?? html?.split('\n').find((l) => /<body\b[^>]*>\s*$/i.test(l));
    if (anchor === undefined) {
      const patch = `*** Begin Patch\n*** Add File: PAGEWRIGHT-NOTE.md\n+# Requested change\n+\n+${note}\n*** End Patch`;
      return { kind: 'tools', calls: [{ type: 'apply_patch', patch }] };
    }
    const indent = `${/^\s*/.exec(anchor)?.[0] ?? ''}  `;
    const patch = [
      '*** Begin Patch',
      '*** Update File: index.html',
      '@@',
      ` ${anchor}`,
      `+${indent}<aside class="pagewright-note" role="note">${escapeHtml(note)}</aside>`,
      '*** End Patch',
    ].join('\n');
    return { kind: 'tools', calls: [{ type: 'apply_patch', patch }] };
  }
  const patched = ctx.toolOutputs[1] ?? '';
  const file = /PAGEWRIGHT-NOTE\.md/.test(patched) ? 'PAGEWRIGHT-NOTE.md' : 'index.html';
  const ok = /Success/.test(patched);
  return {
    kind: 'message',
    text: JSON.stringify(
      ok
        ? { summary: `Added a note to ${file} for the request: "${truncate(note, 120)}"`, files_changed: [file] }
        : { summary: `Could not apply the scripted edit: ${truncate(oneLine(patched), 200)}`, files_changed: [] },
    ),
  };
}

/** The text after "Output:" in an exec_command result. */
function commandOutput(toolOutput: string): string | null {
  const at = toolOutput.indexOf('\nOutput:\n');
  if (at < 0 || !/Process exited with code 0/.test(toolOutput.slice(0, at))) return null;
  return toolOutput.slice(at + '\nOutput:\n'.length);
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
