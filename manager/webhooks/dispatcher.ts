/**
 * Runs the outbox (outbox.ts) for every site with a webhook: one lane per site, at most one
 * delivery in flight per lane, oldest event first, lanes in parallel up to `maxConcurrent`.
 *
 * The controller calls `offer(snapshot)` whenever it reconciles a site (on every informer event
 * of the site or of one of its jobs, and on resync): level-triggered, like the rest of the
 * manager. A lane decides from the newest snapshot it was offered, overlaid with the status it
 * wrote itself and the informers have not shown yet (so a delivery is not repeated just because
 * the cache lags), sleeps until a retry is due, and ends when nothing is owed; the next offer
 * starts it again. Writes go through the injected WebhookStatusWriter; a failed write is retried
 * (1 s doubling to 30 s) before anything else happens in that lane, without sending again.
 *
 * Only the leader may run one (two replicas would both deliver: harmless, the ids are the same,
 * but wasteful). close() aborts attempts in flight (they are not recorded: the next leader sends
 * them again) and resolves when every lane has stopped.
 */
import { isDeepStrictEqual } from 'node:util';
import pLimit from 'p-limit';
import type { Logger } from '../../common/logger.js';
import type { DeliveryOutcome, DeliveryRequest } from './delivery.js';
import type { SiteRef } from './events.js';
import {
  type JobKey,
  type JobWebhookStatus,
  type RetryPolicy,
  type SettleOutcome,
  type SiteSnapshot,
  type SiteWebhookStatus,
  type StatusWrite,
  overlay,
  planSite,
  settle,
} from './outbox.js';
import { WebhookSecretError } from './signature.js';

/** Writes status.webhook; implemented with the manager's status writer. */
export interface WebhookStatusWriter {
  /** Replace PagewrightSite status.webhook with `status`; null removes it (see siteWebhookMergePatch). */
  writeSite(site: SiteRef, status: SiteWebhookStatus | null): Promise<void>;
  /** Replace PagewrightJob status.webhook with `status` (see jobWebhookMergePatch). */
  writeJob(job: JobKey, status: JobWebhookStatus): Promise<void>;
}

/** The site's HMAC key from the Secret its webhook names (signingKeyFromSecret); throws WebhookSecretError. */
export type SigningKeySource = (namespace: string, secretRef: { name: string; key: string }) => Promise<Buffer>;

interface Sender {
  send(req: DeliveryRequest): Promise<DeliveryOutcome>;
}

export interface DispatcherOptions {
  sender: Sender;
  writer: WebhookStatusWriter;
  signingKey: SigningKeySource;
  retry: RetryPolicy;
  logger: Logger;
  /** Deliveries in flight across all sites (default 8). */
  maxConcurrent?: number;
  now?: () => number;
}

type DispatcherState = 'running' | 'closing' | 'closed';

interface Lane {
  key: string;
  latest: SiteSnapshot;
  written: { site?: SiteWebhookStatus | null; jobs: Map<string, JobWebhookStatus> };
  unflushed: StatusWrite[];
  run: Promise<void> | undefined;
  wake: (() => void) | undefined;
  /** Set by offer() while the lane runs: decide again before sleeping. */
  dirty: boolean;
}

const WRITE_RETRY_MS = [1000, 2000, 4000, 8000, 16_000, 30_000];

export class WebhookDispatcher {
  readonly #o: DispatcherOptions;
  readonly #lanes = new Map<string, Lane>();
  readonly #limit: ReturnType<typeof pLimit>;
  readonly #abort = new AbortController();
  readonly #now: () => number;
  #state: DispatcherState = 'running';

  constructor(opts: DispatcherOptions) {
    this.#o = opts;
    this.#limit = pLimit(opts.maxConcurrent ?? 8);
    this.#now = opts.now ?? Date.now;
  }

  get state(): DispatcherState {
    return this.#state;
  }

  /** The newest state of a site; starts or wakes its lane. */
  offer(snapshot: SiteSnapshot): void {
    if (this.#state !== 'running') return;
    const key = `${snapshot.site.namespace}/${snapshot.site.name}`;
    let lane = this.#lanes.get(key);
    if (lane && lane.latest.site.uid !== snapshot.site.uid) {
      this.forget(snapshot.site); // deleted and created again: a new site
      lane = undefined;
    }
    if (!lane) {
      lane = { key, latest: snapshot, written: { jobs: new Map() }, unflushed: [], run: undefined, wake: undefined, dirty: false };
      this.#lanes.set(key, lane);
    }
    lane.latest = snapshot;
    lane.dirty = true;
    if (lane.run !== undefined) lane.wake?.();
    else {
      const started = lane;
      started.run = this.#runLane(started).finally(() => {
        started.run = undefined;
        // an offer that came after the lane's last decision and before it ended
        if (started.dirty && this.#state === 'running' && this.#lanes.get(key) === started) this.offer(started.latest);
      });
    }
  }

  /** The site was deleted: drop its lane (an attempt in flight finishes, unrecorded). */
  forget(site: Pick<SiteRef, 'namespace' | 'name'>): void {
    const key = `${site.namespace}/${site.name}`;
    const lane = this.#lanes.get(key);
    if (!lane) return;
    this.#lanes.delete(key);
    lane.wake?.();
  }

  /** Resolves when no lane has work left (tests, and shutdown). */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.#lanes.values()].map((l) => l.run).filter((r) => r !== undefined);
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  async close(): Promise<void> {
    if (this.#state !== 'running') return this.idle();
    this.#state = 'closing';
    this.#abort.abort(new Error('webhook dispatcher closing'));
    for (const lane of this.#lanes.values()) lane.wake?.();
    await this.idle();
    this.#state = 'closed';
  }

  #alive(lane: Lane): boolean {
    return this.#state === 'running' && this.#lanes.get(lane.key) === lane;
  }

  async #runLane(lane: Lane): Promise<void> {
    const log = this.#o.logger.child({ site: lane.key });
    let failures = 0;
    while (this.#alive(lane)) {
      try {
        if (lane.unflushed.length > 0) {
          await this.#flush(lane);
          failures = 0;
          continue;
        }
        lane.dirty = false;
        this.#prune(lane);
        const snap = overlay(lane.latest, lane.written);
        const plan = planSite(snap, this.#now());
        if (plan.kind === 'idle') return;
        if (plan.kind === 'write') {
          log.info(`webhook status: ${plan.why}`);
          this.#record(lane, plan.write);
          continue;
        }
        if (plan.kind === 'wait') {
          if (!lane.dirty) await this.#sleep(lane, plan.until - this.#now());
          continue;
        }
        if (plan.missed > 0 && plan.pending.attempts === 0) {
          log.warn('webhook events left the history before they were delivered', { missed: plan.missed });
        }
        const outcome = await this.#attempt(plan.pending.event.id, snap.site.namespace, plan);
        if (outcome === undefined) continue; // aborted, or a failure that is not the event's: decide again
        this.#record(lane, settle(snap, plan.pending, outcome, this.#now(), this.#o.retry));
      } catch (err) {
        // a status write that failed (the API server), or a defect: back off, then decide again
        const delay = WRITE_RETRY_MS[Math.min(failures++, WRITE_RETRY_MS.length - 1)]!;
        log.warn('webhook lane failed; retrying', { error: String(err), retry_in_ms: delay });
        await this.#sleep(lane, delay);
      }
    }
  }

  async #attempt(
    id: string,
    namespace: string,
    plan: Extract<ReturnType<typeof planSite>, { kind: 'send' }>,
  ): Promise<SettleOutcome | undefined> {
    const signal = this.#abort.signal;
    return this.#limit(async (): Promise<SettleOutcome | undefined> => {
      if (signal.aborted) return undefined;
      let key: Buffer;
      try {
        key = await this.#o.signingKey(namespace, plan.secretRef);
      } catch (err) {
        if (err instanceof WebhookSecretError) {
          return err.code === 'SecretNotFound'
            ? { result: 'retry', code: 'SecretNotFound', message: err.message }
            : { result: 'giveUp', code: 'SecretInvalid', message: err.message };
        }
        this.#o.logger.warn('cannot read the webhook secret', { webhook_id: id, error: String(err) });
        await sleep(1000, signal);
        return undefined;
      }
      try {
        return await this.#o.sender.send({ url: plan.url, event: plan.pending.event, key, signal });
      } catch (err) {
        if (signal.aborted) return undefined;
        throw err;
      }
    });
  }

  #record(lane: Lane, write: StatusWrite): void {
    if (write.site !== undefined) lane.written.site = write.site;
    if (write.job) lane.written.jobs.set(write.job.ref.uid, write.job.status);
    lane.unflushed.push(write);
  }

  async #flush(lane: Lane): Promise<void> {
    while (lane.unflushed.length > 0) {
      const write = lane.unflushed[0]!;
      if (write.job) await this.#o.writer.writeJob(write.job.ref, write.job.status);
      if (write.site !== undefined) await this.#o.writer.writeSite(lane.latest.site, write.site);
      lane.unflushed.shift();
    }
  }

  /** Forgets own writes the snapshot already shows. */
  #prune(lane: Lane): void {
    if (lane.unflushed.length > 0) return;
    const { site, jobs } = lane.written;
    if (site !== undefined && isDeepStrictEqual(site ?? undefined, lane.latest.status)) delete lane.written.site;
    for (const [uid, marker] of jobs) {
      const job = lane.latest.jobs.find((j) => j.uid === uid);
      if (!job || isDeepStrictEqual(job.webhook, marker)) jobs.delete(uid);
    }
  }

  async #sleep(lane: Lane, ms: number): Promise<void> {
    if (ms <= 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        lane.wake = undefined;
        resolve();
      }
      lane.wake = done;
    });
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
