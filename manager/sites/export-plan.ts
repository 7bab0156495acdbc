/**
 * What a site's publish targets are owed: a pure decision on the site's history and what
 * status.targets says was done, in outbox.ts's manner (webhook delivery). Every change of the
 * current version (a push, a publish, a rollback) goes to every target, one at a time, oldest
 * first, each as its own commit or sync; what was exported is written into the status after
 * the target took it, so a manager that crashes in between exports it again (git: the commit
 * carries the change's sequence, and a tip that already is this change is not pushed twice).
 *
 * Choices, as for webhooks:
 *   - a target newly named (or whose settings changed: a new URL is a new place) starts with the
 *     newest change, the site as it is now, not the whole history;
 *   - changes that left the listed history before they were exported are skipped to the oldest
 *     one listed (the status says how many: `missed`);
 *   - a failed export is retried with backoff (retryDelayMs), forever: a PublishConflict waits for
 *     a human (the branch moved; Pagewright never force-pushes) and a refused URL for a config
 *     change, and the next change waits behind it, so the target never skips a version it was
 *     owed. Each retry is visible in status.targets[].lastError and the site's condition.
 */
import { createHash } from 'node:crypto';
import type { SiteTarget, TargetStatus } from '../../common/site-resource.js';
import { type RetryPolicy, retryDelayMs } from '../webhooks/outbox.js';

export interface HistoryEntry {
  sequence: number;
  action: string;
  version: string;
  time: string;
  job?: string;
  user?: string;
}

export type TargetPlan =
  | { kind: 'idle' }
  | { kind: 'start'; status: TargetStatus }
  | { kind: 'wait'; untilMs: number }
  | { kind: 'export'; entry: HistoryEntry; missed: number };

/** The settings a target's progress belongs to (its name aside). */
export function targetSpecHash(target: SiteTarget): string {
  const { name: _name, ...settings } = target;
  return createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 16);
}

/** `history` oldest first. */
export function planTarget(
  target: SiteTarget,
  status: TargetStatus | undefined,
  history: readonly HistoryEntry[],
  nowMs: number,
): TargetPlan {
  const hash = targetSpecHash(target);
  const newest = history.at(-1);
  if (!status || status.specHash !== hash) {
    if (!newest) return { kind: 'idle' };
    return { kind: 'start', status: { name: target.name, specHash: hash, exportedThrough: newest.sequence - 1 } };
  }
  const through = status.exportedThrough ?? 0;
  const owed = history.find((h) => h.sequence > through);
  if (!owed) return { kind: 'idle' };
  const until = status.nextAttemptTime ? Date.parse(status.nextAttemptTime) : 0;
  if (until > nowMs) return { kind: 'wait', untilMs: until };
  return { kind: 'export', entry: owed, missed: Math.max(0, owed.sequence - through - 1) };
}

/** The status after the target took the change. */
export function exported(status: TargetStatus, entry: HistoryEntry, nowIso: string, commit?: string): TargetStatus {
  const { attempts: _a, nextAttemptTime: _n, lastError: _e, ...rest } = status;
  return { ...rest, exportedThrough: entry.sequence, version: entry.version, time: nowIso, ...(commit ? { commit } : {}) };
}

/** The status after a failed try: the error, and when the next try is due. */
export function failedTry(
  status: TargetStatus,
  entry: HistoryEntry,
  error: { code: string; message: string },
  nowMs: number,
  policy: Pick<RetryPolicy, 'baseBackoffMs' | 'random'>,
  maxDelayMs = 600_000,
): TargetStatus {
  const attempts = (status.attempts ?? 0) + 1;
  const delay = Math.min(retryDelayMs(attempts, { maxAttempts: Number.POSITIVE_INFINITY, ...policy }), maxDelayMs);
  return {
    ...status,
    attempts,
    nextAttemptTime: new Date(nowMs + delay).toISOString(),
    lastError: { code: error.code, message: error.message.slice(0, 1000), time: new Date(nowMs).toISOString(), sequence: entry.sequence },
  };
}

/** The commit message of a change: a subject for people, trailers for the retry check. */
export function commitMessage(site: { namespace: string; name: string; uid: string }, entry: HistoryEntry): string {
  const who = entry.job ? `job ${entry.job}` : entry.user ? `user ${entry.user}` : 'Pagewright';
  const verb = entry.action === 'rolledback' ? 'roll back to' : entry.action === 'pushed' ? 'push' : 'publish';
  return [
    `Pagewright: ${verb} ${entry.version.slice(0, 12)} (${who})`,
    '',
    `Pagewright-Site: ${site.namespace}/${site.name} ${site.uid}`,
    `Pagewright-Sequence: ${entry.sequence}`,
    `Pagewright-Version: ${entry.version}`,
    '',
  ].join('\n');
}

/** Whether a branch tip's message says it already is this change (or a later one) of this site. */
export function tipHasChange(message: string, site: { uid: string }, sequence: number): boolean {
  const siteLine = /^Pagewright-Site: \S+ (\S+)$/m.exec(message);
  const seqLine = /^Pagewright-Sequence: (\d+)$/m.exec(message);
  return siteLine?.[1] === site.uid && Number(seqLine?.[1]) >= sequence;
}
