/**
 * What the agent is told on a repair turn: the findings its change introduced, as file, line and
 * message, and the same final message as before. Pure; the runner resumes the agent's own codex
 * thread with it (runner/codex.ts `resume`), so the model has its first turn in view.
 */
import type { ManifestCheck } from '../../common/schemas.js';

/** Findings listed in the prompt; the rest are counted. */
const LISTED = 30;

export function failedChecks(checks: readonly ManifestCheck[]): ManifestCheck[] {
  return checks.filter((c) => !c.passed);
}

export function repairPrompt(checks: readonly ManifestCheck[]): string {
  const failed = failedChecks(checks);
  const total = failed.reduce((n, c) => n + c.introduced, 0);
  // every failed check gets its share of the list (a build that broke must not hide behind 40 links)
  const share = Math.ceil(LISTED / Math.max(1, failed.length));
  const lines = failed.flatMap((c) =>
    c.findings
      .filter((f) => f.introduced)
      .slice(0, share)
      .map(
        (f) =>
          `- [${c.name}] ${f.path ? `${f.path}${f.line ? `:${f.line}` : ''}` : "the site's check command"}: ${f.message.replace(/\s+/g, ' ')}`,
      ),
  );
  const more = total > lines.length ? [`- ... and ${total - lines.length} more of the same kinds`] : [];
  return [
    `The site's checks ran on your edit and failed (${failed.map((c) => c.name).join(', ')}): your change introduced ${total} problem(s).`,
    'Fix them, keeping the edit you were asked for. Problems the site already had are not listed: leave them.',
    '',
    ...lines,
    ...more,
    '',
    'When you are done, end with the same JSON final message as before: a summary of the whole change, and every file you changed.',
  ].join('\n');
}
