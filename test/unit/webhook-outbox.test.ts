/**
 * The webhook outbox's decisions (manager/webhooks/outbox.ts), without a network: what is owed
 * from a site's history and ended jobs, in which order, what a delivery outcome writes into the
 * status, and the retry schedule. The dispatcher that runs them against a real receiver is
 * tested in test/integration/webhook-dispatch.test.ts.
 */
import { expect } from 'chai';
import type { DeliveryOutcome } from '../../manager/webhooks/delivery.js';
import type { SiteHistoryEntry, SiteRef } from '../../manager/webhooks/events.js';
import {
  type EndedJob,
  JobWebhookStatus,
  MAX_RETRY_AFTER_MS,
  type Plan,
  type RetryPolicy,
  type SettleOutcome,
  type SiteSnapshot,
  SiteWebhookStatus,
  jobWebhookMergePatch,
  overlay,
  planSite,
  retryDelayMs,
  settle,
  siteWebhookMergePatch,
  urlSha256,
} from '../../manager/webhooks/outbox.js';

const T0 = Date.parse('2026-03-01T10:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const v = (n: number) => n.toString(16).padStart(64, '0');
const SITE: SiteRef = { namespace: 'web', name: 'bakery', uid: '11111111-2222-3333-4444-555555555555' };
const URL_A = 'https://hooks.example.com/a';
const POLICY: RetryPolicy = { maxAttempts: 4, baseBackoffMs: 10_000, random: () => 0.5 };

function entry(
  sequence: number,
  action: SiteHistoryEntry['action'] = 'published',
  extra: Partial<SiteHistoryEntry> = {},
): SiteHistoryEntry {
  return { sequence, action, version: v(sequence), time: iso(T0 + sequence * 60_000), job: `job-${sequence}`, ...extra };
}

function endedJob(name: string, atMs: number, extra: Partial<EndedJob> = {}): EndedJob {
  return {
    namespace: 'web',
    name,
    uid: `uid-${name}`,
    attempt: 1,
    phase: 'Succeeded',
    completionTime: iso(atMs),
    baseVersion: v(1),
    outputVersion: v(99),
    ...extra,
  };
}

function snapshot(over: Partial<SiteSnapshot> = {}): SiteSnapshot {
  return {
    site: SITE,
    webhook: { url: URL_A, secretRef: { name: 'hook', key: 'secret' } },
    history: [],
    jobs: [],
    status: { since: iso(T0), deliveredThrough: 0 },
    ...over,
  };
}

function send(plan: Plan): Extract<Plan, { kind: 'send' }> {
  expect(plan.kind, JSON.stringify(plan)).to.equal('send');
  return plan as Extract<Plan, { kind: 'send' }>;
}

/** Plans, settles with `outcome`, applies the write to the snapshot: one attempt, as the dispatcher does it. */
function step(snap: SiteSnapshot, outcome: SettleOutcome, now: number, policy = POLICY): SiteSnapshot {
  const plan = send(planSite(snap, now));
  const write = settle(snap, plan.pending, outcome, now, policy);
  return overlay(snap, {
    ...(write.site !== undefined ? { site: write.site } : {}),
    jobs: new Map(write.job ? [[write.job.ref.uid, write.job.status]] : []),
  });
}

const OK: DeliveryOutcome = { result: 'delivered', status: 200 };
const E500: DeliveryOutcome = { result: 'retry', code: 'ServerError', status: 500, message: 'HTTP 500' };

describe('webhook outbox', () => {
  describe('what is owed', () => {
    it('nothing, and writes nothing, for a site without a webhook', () => {
      expect(planSite(snapshot({ webhook: undefined, status: undefined, history: [entry(1)] }), T0).kind).to.equal('idle');
    });

    it('clears status.webhook when the webhook is removed', () => {
      const plan = planSite(snapshot({ webhook: undefined, history: [entry(1)] }), T0);
      expect(plan).to.deep.include({ kind: 'write', write: { site: null } });
    });

    it('a newly configured webhook starts with the newest history entry and the jobs that end from now on', () => {
      const old = endedJob('old', T0 - 1000);
      const snap = snapshot({ status: undefined, history: [entry(3), entry(1), entry(2)], jobs: [old] });
      const init = planSite(snap, T0 + 5000);
      expect(init).to.deep.equal({
        kind: 'write',
        write: { site: { since: iso(T0 + 5000), deliveredThrough: 2 } },
        why: 'webhook configured',
      });
      const next = snapshot({ ...snap, status: { since: iso(T0 + 5000), deliveredThrough: 2 } });
      const plan = send(planSite(next, T0 + 5000));
      expect(plan.pending.event.id).to.equal(`pws_${SITE.uid}_3`);
      expect(plan.pending.attempts).to.equal(0);
      // after it, nothing: the old job ended before the webhook was set
      expect(planSite(step(next, OK, T0 + 6000), T0 + 6000).kind).to.equal('idle');
    });

    it('history in sequence order whatever order it is given in, each event saying the version before it', () => {
      let snap = snapshot({ history: [entry(2, 'rolledback', { job: undefined, user: 'alice' }), entry(1)] });
      const first = send(planSite(snap, T0)).pending.event;
      expect(first.data).to.deep.include({ action: 'published', version: v(1), by: { kind: 'job', name: 'job-1' } });
      expect(first.data).to.not.have.property('previousVersion');
      snap = step(snap, OK, T0);
      const second = send(planSite(snap, T0)).pending.event;
      expect(second.type).to.equal('dev.pagewright.site.rolledback');
      expect(second.data).to.deep.include({ version: v(2), previousVersion: v(1), by: { kind: 'user', name: 'alice' } });
      expect(planSite(step(snap, OK, T0), T0).kind).to.equal('idle');
    });

    it('site and job events merged by time, a job before the publish at the same instant', () => {
      const published = entry(1, 'published', { time: iso(T0 + 60_000) });
      const snap = snapshot({
        history: [published],
        jobs: [
          endedJob('late', T0 + 120_000),
          endedJob('same', T0 + 60_000),
          endedJob('early', T0 + 1000, { phase: 'Failed', reason: 'CodexFailed' }),
        ],
      });
      const order: string[] = [];
      let s = snap;
      for (let plan = planSite(s, T0); plan.kind === 'send'; plan = planSite(s, T0)) {
        order.push(plan.pending.event.type + (plan.pending.origin.kind === 'job' ? `:${plan.pending.origin.job.name}` : ''));
        s = step(s, OK, T0);
      }
      expect(order).to.deep.equal([
        'dev.pagewright.job.failed:early',
        'dev.pagewright.job.succeeded:same',
        'dev.pagewright.site.published',
        'dev.pagewright.job.succeeded:late',
      ]);
    });

    it('a job with a final marker for its event is not owed; a marker of another attempt does not count', () => {
      const delivered: JobWebhookStatus = { id: 'pwj_uid-a_1_succeeded', state: 'Delivered', attempts: 1, lastAttemptAt: iso(T0) };
      const gaveUp: JobWebhookStatus = { id: 'pwj_uid-b_1_failed', state: 'GaveUp', attempts: 3, lastAttemptAt: iso(T0) };
      const snap = snapshot({
        jobs: [
          endedJob('a', T0 + 1, { webhook: delivered }),
          endedJob('b', T0 + 2, { phase: 'Failed', webhook: gaveUp }),
          endedJob('c', T0 + 3, { attempt: 2, phase: 'Failed', webhook: { ...gaveUp, id: 'pwj_uid-c_1_failed' } }),
        ],
      });
      expect(send(planSite(snap, T0)).pending.event.id).to.equal('pwj_uid-c_2_failed');
    });

    it('says how many entries left the history before they were delivered', () => {
      const plan = send(planSite(snapshot({ history: [entry(7), entry(8)], status: { since: iso(T0), deliveredThrough: 4 } }), T0));
      expect(plan.pending.origin).to.deep.equal({ kind: 'site', sequence: 7 });
      expect(plan.missed).to.equal(2);
    });
  });

  describe('after an attempt', () => {
    it('a delivered site event advances deliveredThrough and records the delivery', () => {
      const snap = snapshot({ history: [entry(1), entry(2)] });
      const plan = send(planSite(snap, T0));
      expect(settle(snap, plan.pending, OK, T0 + 10, POLICY)).to.deep.equal({
        site: { since: iso(T0), deliveredThrough: 1, lastDelivered: { id: `pws_${SITE.uid}_1`, at: iso(T0 + 10) } },
      });
    });

    it('a failed attempt is retried with the same id after a growing, jittered delay, then delivered', () => {
      let snap = snapshot({ history: [entry(1)] });
      const id = `pws_${SITE.uid}_1`;
      snap = step(snap, E500, T0);
      expect(snap.status?.retrying).to.deep.equal({
        id,
        attempts: 1,
        lastAttemptAt: iso(T0),
        nextAttemptAt: iso(T0 + 7500), // 10 s * 2^0 * (0.5 + 0.5/2)
        lastError: 'ServerError: HTTP 500',
      });
      expect(planSite(snap, T0 + 7499)).to.deep.include({ kind: 'wait', until: T0 + 7500 });
      const second = send(planSite(snap, T0 + 7500));
      expect(second.pending.event.id).to.equal(id);
      expect(second.pending.attempts).to.equal(1);
      snap = step(snap, E500, T0 + 7500);
      expect(snap.status?.retrying).to.deep.include({ attempts: 2, nextAttemptAt: iso(T0 + 7500 + 15_000) });
      snap = step(snap, OK, T0 + 30_000);
      expect(snap.status).to.deep.equal({ since: iso(T0), deliveredThrough: 1, lastDelivered: { id, at: iso(T0 + 30_000) } });
    });

    it('honours a Retry-After longer than the backoff, up to an hour', () => {
      const snap = snapshot({ history: [entry(1)] });
      const plan = send(planSite(snap, T0));
      const later = (ms: number) =>
        settle(snap, plan.pending, { result: 'retry', code: 'RateLimited', status: 429, message: 'HTTP 429', retryAfterMs: ms }, T0, POLICY)
          .site;
      expect(later(120_000)?.retrying?.nextAttemptAt).to.equal(iso(T0 + 120_000));
      expect(later(1000)?.retrying?.nextAttemptAt).to.equal(iso(T0 + 7500));
      expect(later(10 * MAX_RETRY_AFTER_MS)?.retrying?.nextAttemptAt).to.equal(iso(T0 + MAX_RETRY_AFTER_MS));
    });

    it('gives up after maxAttempts, records why, and moves on to the next event', () => {
      let snap = snapshot({ history: [entry(1), entry(2)] });
      for (let i = 0; i < POLICY.maxAttempts; i++) snap = step(snap, E500, T0 + i * 3_600_000);
      const at = T0 + 3 * 3_600_000;
      expect(snap.status).to.deep.equal({
        since: iso(T0),
        deliveredThrough: 1,
        lastError: { id: `pws_${SITE.uid}_1`, code: 'ServerError', message: 'gave up after 4 attempts: HTTP 500', at: iso(at) },
      });
      expect(send(planSite(snap, at)).pending.event.id).to.equal(`pws_${SITE.uid}_2`);
    });

    it('gives up at once on a 4xx, a redirect, a refused address or a bad secret', () => {
      const outcomes: Extract<SettleOutcome, { result: 'giveUp' }>[] = [
        { result: 'giveUp', code: 'ClientError', status: 404, message: 'HTTP 404' },
        { result: 'giveUp', code: 'Redirected', status: 302, message: 'redirect', location: 'https://127.0.0.1/' },
        { result: 'giveUp', code: 'AddressNotAllowed', message: 'loopback' },
        { result: 'giveUp', code: 'SecretInvalid', message: 'not whsec_' },
      ];
      for (const outcome of outcomes) {
        const snap = snapshot({ history: [entry(1)] });
        const after = step(snap, outcome, T0);
        expect(after.status?.deliveredThrough, outcome.code).to.equal(1);
        expect(after.status?.lastError?.code).to.equal(outcome.code);
        expect(after.status?.retrying).to.equal(undefined);
      }
    });

    it('a missing Secret is retried: it may be created yet', () => {
      const after = step(snapshot({ history: [entry(1)] }), { result: 'retry', code: 'SecretNotFound', message: 'no Secret' }, T0);
      expect(after.status?.retrying?.lastError).to.equal('SecretNotFound: no Secret');
    });

    it('410 Gone stops delivery to that URL; a new URL starts afresh', () => {
      let snap = snapshot({ history: [entry(1), entry(2)] });
      snap = step(snap, { result: 'giveUp', code: 'Gone', status: 410, message: 'HTTP 410' }, T0);
      expect(snap.status?.gone).to.deep.equal({ urlSha256: urlSha256(URL_A), at: iso(T0) });
      snap = { ...snap, history: [...snap.history, entry(3)], jobs: [endedJob('j', T0 + 1)] };
      expect(planSite(snap, T0 + 1000)).to.deep.include({ kind: 'idle' });
      const moved = { ...snap, webhook: { url: 'https://hooks.example.com/b', secretRef: { name: 'hook', key: 'secret' } } };
      expect(planSite(moved, T0 + 2000)).to.deep.equal({
        kind: 'write',
        write: { site: { since: iso(T0 + 2000), deliveredThrough: 2 } },
        why: 'webhook URL changed after 410 Gone',
      });
    });

    it('a job event is recorded on the job: Retrying, then Delivered; a given-up one also on the site', () => {
      const job = endedJob('j', T0 + 1);
      let snap = snapshot({ jobs: [job] });
      snap = step(snap, E500, T0);
      expect(snap.jobs[0]?.webhook).to.deep.equal({
        id: 'pwj_uid-j_1_succeeded',
        state: 'Retrying',
        attempts: 1,
        lastAttemptAt: iso(T0),
        nextAttemptAt: iso(T0 + 7500),
        lastError: 'ServerError: HTTP 500',
      });
      expect(snap.status).to.deep.equal({ since: iso(T0), deliveredThrough: 0 });
      expect(planSite(snap, T0 + 1000).kind).to.equal('wait');
      const delivered = step(snap, OK, T0 + 7500);
      expect(delivered.jobs[0]?.webhook).to.deep.equal({
        id: 'pwj_uid-j_1_succeeded',
        state: 'Delivered',
        attempts: 2,
        lastAttemptAt: iso(T0 + 7500),
      });
      expect(planSite(delivered, T0 + 7500).kind).to.equal('idle');

      const gone = step(snap, { result: 'giveUp', code: 'ClientError', status: 400, message: 'HTTP 400' }, T0 + 7500);
      expect(gone.jobs[0]?.webhook).to.deep.include({ state: 'GaveUp', attempts: 2, lastError: 'ClientError: HTTP 400' });
      expect(gone.status?.lastError).to.deep.equal({
        id: 'pwj_uid-j_1_succeeded',
        code: 'ClientError',
        message: 'HTTP 400',
        at: iso(T0 + 7500),
      });
    });
  });

  it('retries about an hour with the defaults: base * 2^(n-1), jittered in [0.5, 1)', () => {
    const total = (random: () => number) => {
      let sum = 0;
      for (let n = 1; n <= 9; n++) sum += retryDelayMs(n, { maxAttempts: 10, baseBackoffMs: 10_000, random });
      return sum / 60_000;
    };
    expect(total(() => 0)).to.be.closeTo(42.6, 0.1);
    expect(total(() => 0.999_999)).to.be.closeTo(85.2, 0.1);
    expect(retryDelayMs(3, { maxAttempts: 10, baseBackoffMs: 1000, random: () => 0 })).to.equal(2000);
  });

  it('overlays what the dispatcher wrote over a lagging cache', () => {
    const snap = snapshot({ jobs: [endedJob('j', T0)] });
    const marker: JobWebhookStatus = { id: 'x', state: 'Delivered', attempts: 1, lastAttemptAt: iso(T0) };
    const o = overlay(snap, { site: { since: iso(T0), deliveredThrough: 5 }, jobs: new Map([['uid-j', marker]]) });
    expect(o.status?.deliveredThrough).to.equal(5);
    expect(o.jobs[0]?.webhook).to.equal(marker);
    expect(overlay(snap, { site: null, jobs: new Map() })).to.not.have.property('status');
    expect(overlay(snap, { jobs: new Map() }).status).to.equal(snap.status);
  });

  it('merge patches name every field, so a patch replaces status.webhook exactly', () => {
    expect(siteWebhookMergePatch({ since: iso(T0), deliveredThrough: 3 })).to.deep.equal({
      status: { webhook: { since: iso(T0), deliveredThrough: 3, retrying: null, lastDelivered: null, lastError: null, gone: null } },
    });
    expect(siteWebhookMergePatch(null)).to.deep.equal({ status: { webhook: null } });
    expect(jobWebhookMergePatch({ id: 'x', state: 'Delivered', attempts: 2, lastAttemptAt: iso(T0) }).status.webhook).to.deep.equal({
      id: 'x',
      state: 'Delivered',
      attempts: 2,
      lastAttemptAt: iso(T0),
      nextAttemptAt: null,
      lastError: null,
    });
    // and what settle writes is what the schemas accept (the CRD's status schema mirrors them)
    const snap = snapshot({ history: [entry(1)], jobs: [endedJob('j', T0 + 120_000)] });
    const w = settle(snap, send(planSite(snap, T0)).pending, E500, T0, POLICY);
    expect(() => SiteWebhookStatus.parse(w.site)).to.not.throw();
    const after = step(snap, OK, T0);
    const wj = settle(after, send(planSite(after, T0)).pending, E500, T0, POLICY);
    expect(() => JobWebhookStatus.parse(wj.job?.status)).to.not.throw();
  });
});
