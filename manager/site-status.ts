/**
 * What a PagewrightSite's status says, computed from what storage says of the site (its
 * current version and its history, newest first). Pure. The manager owns these fields and
 * writes them with a merge patch (site-controller.ts); status.webhook is webhook delivery's and
 * never touched here.
 */
import type { Condition } from '../common/job-resource.js';
import { SITE_HISTORY_SHOWN, type SiteAction, type SiteHistoryItem, type SiteStatus } from '../common/site-resource.js';
import type { SiteInfo } from '../common/storage-client.js';

export type MirroredStatus = Omit<SiteStatus, 'webhook' | 'webhookSecret'>;

const ACTIONS: Record<SiteInfo['history'][number]['action'], SiteAction> = {
  pushed: 'pushed',
  published: 'published',
  rolled_back: 'rolledback',
};

/** The entries as the status shows them: who did it is a job's name or a user's. */
function historyItems(info: SiteInfo): SiteHistoryItem[] {
  return info.history.slice(0, SITE_HISTORY_SHOWN).map((h) => {
    const action = ACTIONS[h.action];
    // storage names a publishing job by its uid; `by` is its name (manager/publisher.ts passes it)
    const who = action === 'published' ? { job: h.by ?? h.job_id ?? undefined } : h.by ? { user: h.by } : {};
    return { sequence: h.seq, action, version: h.version, time: h.at, ...stripUndefined(who) };
  });
}

/** The site's status for what storage holds (null: no version yet). `now` stamps a changed condition. */
export function mirroredStatus(info: SiteInfo | null, previous: SiteStatus, generation: number | undefined, now: string): MirroredStatus {
  const ready: Condition = info
    ? { type: 'Ready', status: 'True', reason: 'HasVersion', message: `version ${info.version.slice(0, 12)} is current` }
    : {
        type: 'Ready',
        status: 'False',
        reason: 'NoVersion',
        message: 'the site has no version yet: pagewright sites push NAME DIR uploads one',
      };
  const conditions = [
    withTransition(
      ready,
      previous.conditions?.find((c) => c.type === 'Ready'),
      now,
    ),
  ];
  if (!info) return { conditions, versions: 0, history: [], ...(generation !== undefined ? { observedGeneration: generation } : {}) };
  const history = historyItems(info);
  const latest = history[0];
  return {
    currentVersion: info.version,
    currentVersionShort: info.version.slice(0, 12),
    ...(latest?.job || latest?.user ? { publishedBy: latest.job ?? latest.user } : {}),
    versions: info.revision,
    history,
    conditions,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
  };
}

/** A condition keeps its lastTransitionTime while its status stays the same. */
function withTransition(next: Condition, previous: Condition | undefined, now: string): Condition {
  const same = previous && previous.status === next.status;
  return { ...next, lastTransitionTime: same && previous.lastTransitionTime ? previous.lastTransitionTime : now };
}

function stripUndefined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
