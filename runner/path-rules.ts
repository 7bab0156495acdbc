/**
 * A site's path rules and change limits (PagewrightSite spec.paths), checked on the agent's
 * output before anything is packed or uploaded: a pure decision on the changes (runner/tree.ts's
 * diff) and the output tree's sizes. The first path that breaks a rule is named, and nothing is
 * published: the job fails PathNotAllowed or ChangeTooLarge.
 *
 * A change is an added, modified or deleted file (a deletion of a denied path is a change to it).
 * A path may be changed when `allow` is empty or one of its globs matches, and no `deny` glob
 * matches. Globs are picomatch's (the matcher micromatch, chokidar and fast-glob use), with
 * `dot: true` (`**` reaches `.well-known/`), over the site-relative path. Bytes are the new sizes of
 * added and modified files: what the change writes. The agent is told the same rules in its
 * instructions (rulesForInstructions), so a well-behaved agent never meets the refusal.
 */
import picomatch from 'picomatch';
import { PagewrightError } from '../common/errors.js';
import type { FileChange, PathRules } from '../common/schemas.js';

export type PathRuleViolation = { code: 'PathNotAllowed' | 'ChangeTooLarge'; message: string };

export function checkPathRules(
  changes: readonly FileChange[],
  sizeOf: (path: string) => number,
  rules: PathRules,
): PathRuleViolation | null {
  const allow = rules.allow.length > 0 ? picomatch(rules.allow, { dot: true }) : null;
  const deny = rules.deny.length > 0 ? picomatch(rules.deny, { dot: true }) : null;
  for (const c of changes) {
    if (deny?.(c.path)) {
      return {
        code: 'PathNotAllowed',
        message: `${JSON.stringify(c.path)} (${c.change}) matches the site's deny rules (${rules.deny.join(', ')})`,
      };
    }
    if (allow && !allow(c.path)) {
      return {
        code: 'PathNotAllowed',
        message: `${JSON.stringify(c.path)} (${c.change}) is outside the site's allow rules (${rules.allow.join(', ')})`,
      };
    }
  }
  if (rules.max_files !== undefined && changes.length > rules.max_files) {
    return {
      code: 'ChangeTooLarge',
      message: `${changes.length} files changed, more than the site's limit of ${rules.max_files} (at ${JSON.stringify(changes[rules.max_files]!.path)})`,
    };
  }
  if (rules.max_bytes !== undefined) {
    let bytes = 0;
    for (const c of changes) {
      if (c.change === 'deleted') continue;
      bytes += sizeOf(c.path);
      if (bytes > rules.max_bytes) {
        return {
          code: 'ChangeTooLarge',
          message: `the change writes more than the site's limit of ${rules.max_bytes} bytes (at ${JSON.stringify(c.path)})`,
        };
      }
    }
  }
  return null;
}

/** Throws the violation as the job's failure. */
export function enforcePathRules(changes: readonly FileChange[], sizeOf: (path: string) => number, rules: PathRules | undefined): void {
  if (!rules) return;
  const v = checkPathRules(changes, sizeOf, rules);
  if (v) throw new PagewrightError(v.code, v.message);
}

/** The rules as the agent reads them, appended to its instructions (empty when there are none). */
export function rulesForInstructions(rules: PathRules | undefined): string {
  if (!rules) return '';
  const lines: string[] = [];
  if (rules.allow.length) lines.push(`- You may change only files matching: ${rules.allow.map((g) => `\`${g}\``).join(', ')}.`);
  if (rules.deny.length) lines.push(`- Never change, add or delete files matching: ${rules.deny.map((g) => `\`${g}\``).join(', ')}.`);
  if (rules.max_files !== undefined) lines.push(`- Change at most ${rules.max_files} files in all.`);
  if (rules.max_bytes !== undefined) lines.push(`- The files you add or modify may total at most ${rules.max_bytes} bytes.`);
  if (lines.length === 0) return '';
  return `\n\n## This site's path rules\n\nAn output that breaks them is refused and nothing is published:\n${lines.join('\n')}\n`;
}
