/**
 * Leader election on a coordination.k8s.io/v1 Lease, client-go's algorithm in small
 * (k8s.io/client-go/tools/leaderelection): the holder renews every retry period; others take
 * over once the record has not changed for leaseDuration (by their own clock, so clock skew
 * between nodes does not matter); every write carries the read resourceVersion, so two
 * candidates never both win.
 *
 * What keeps two leaders from running is the renew deadline, shorter than leaseDuration: a
 * leader that has not renewed within it stops leading, on a timer of its own, at that moment,
 * and any Lease request still in flight is aborted then. Stepping down must not wait for a
 * request to come back: a request on a connection gone silent hangs until the client's headers
 * timeout (60 s, common/kube-client.ts), long after a candidate, seeing the record unchanged for
 * leaseDuration, has taken over. A candidate's requests are bounded by the deadline too, so a
 * hung one cannot keep it from campaigning. The margin between the two durations covers timer
 * slop and clock rate: the old leader's deadline runs from the start of its last successful
 * renew, a candidate's leaseDuration from after it saw that renew's record.
 */
import {
  type ConfigurationOptions,
  type CoordinationV1Api,
  Observable,
  type RequestContext,
  type ResponseContext,
  type V1Lease,
  V1MicroTime,
} from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';
import { apiCode } from './status.js';

export interface LeaderElectorOptions {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  /** How long a candidate waits for an unchanged record before it takes the Lease over. */
  leaseDurationMs: number;
  /** A leader that could not renew within this long stops leading; every Lease request is aborted after it. Below leaseDurationMs. */
  renewDeadlineMs: number;
  /** How often the leader renews and a candidate tries (client-go's retryPeriod). Below renewDeadlineMs. */
  renewMs: number;
  logger: Logger;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

/** The elector's lifecycle: campaigning, leading, then stopped for good (stop()). */
type ElectorState = 'idle' | 'candidate' | 'leading' | 'stopped';

export class LeaderElector {
  readonly #o: LeaderElectorOptions;
  #state: ElectorState = 'idle';
  #observed: { record: string; at: number } | null = null;
  /** Fires at the renew deadline of the current term. */
  #deadline: NodeJS.Timeout | null = null;
  /** Aborted when the current term ends: the term's requests in flight end with it. */
  #term: AbortController | null = null;
  /** Aborted by stop(): the loop's wait and its request in flight end at once. */
  readonly #stopping = new AbortController();
  #loop: Promise<void> | null = null;

  constructor(opts: LeaderElectorOptions) {
    if (!(opts.renewMs < opts.renewDeadlineMs && opts.renewDeadlineMs < opts.leaseDurationMs))
      throw new Error(
        `leader election needs renew period < renew deadline < lease duration (got ${opts.renewMs} ms, ${opts.renewDeadlineMs} ms, ${opts.leaseDurationMs} ms)`,
      );
    this.#o = opts;
  }

  get isLeader(): boolean {
    return this.#state === 'leading';
  }

  start(): void {
    if (this.#state !== 'idle') return;
    this.#state = 'candidate';
    this.#loop = this.#run();
  }

  /** Stops campaigning; if leading, gives the Lease up so a successor need not wait it out. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#stopping.abort();
    await this.#loop;
    const leading = this.#state === 'leading';
    this.#state = 'stopped';
    if (!leading) return;
    this.#endTerm();
    this.#o.logger.info('stopped leading', { lease: this.#o.name, identity: this.#o.identity, why: 'shutting down' });
    this.#o.onStoppedLeading();
    try {
      const signal = AbortSignal.timeout(Math.ceil(this.#o.renewDeadlineMs));
      const lease = await this.#read(signal);
      if (lease?.spec?.holderIdentity === this.#o.identity) {
        lease.spec.holderIdentity = '';
        lease.spec.leaseDurationSeconds = 1;
        lease.spec.renewTime = new V1MicroTime();
        await this.#o.api.replaceNamespacedLease({ namespace: this.#o.namespace, name: this.#o.name, body: lease }, bounded(signal));
        this.#o.logger.info('released the lease', { lease: this.#o.name });
      }
    } catch (err) {
      this.#o.logger.warn('could not release the lease', { error: String(err) });
    }
  }

  async #run(): Promise<void> {
    while (!this.#stopping.signal.aborted) {
      const started = Date.now();
      // a leader's request ends with its term (at the deadline); a candidate's after as long
      const signal = AbortSignal.any([
        this.#stopping.signal,
        this.#term?.signal ?? AbortSignal.timeout(Math.ceil(this.#o.renewDeadlineMs)),
      ]);
      try {
        const held = await this.#tryAcquireOrRenew(signal);
        if (this.#stopping.signal.aborted) return;
        if (held) this.#renewed(started);
        else if (this.#state === 'leading') this.#stepDown('another replica holds the lease');
      } catch (err) {
        if (this.#stopping.signal.aborted) return;
        this.#o.logger.warn('lease request failed', { error: String(err), leading: this.#state === 'leading' });
      }
      await sleep(this.#o.renewMs, this.#stopping.signal);
    }
  }

  /** A renew (or an acquisition) that started at `started` succeeded: the term runs until started + renewDeadline. */
  #renewed(started: number): void {
    if (this.#deadline) clearTimeout(this.#deadline);
    this.#deadline = setTimeout(
      () => this.#stepDown(`no renew succeeded within the renew deadline (${this.#o.renewDeadlineMs} ms)`),
      Math.max(0, started + this.#o.renewDeadlineMs - Date.now()),
    );
    if (this.#state === 'leading') return;
    this.#state = 'leading';
    this.#term = new AbortController();
    this.#o.logger.info('became leader', { lease: this.#o.name, identity: this.#o.identity });
    this.#o.onStartedLeading();
  }

  #stepDown(why: string): void {
    if (this.#state !== 'leading' || !this.#endTerm()) return;
    this.#state = 'candidate';
    this.#o.logger.error('stopped leading', { lease: this.#o.name, identity: this.#o.identity, why });
    this.#o.onStoppedLeading();
  }

  /** Ends the current term: its deadline timer and its requests in flight. False if there was none. */
  #endTerm(): boolean {
    if (this.#deadline) clearTimeout(this.#deadline);
    this.#deadline = null;
    const term = this.#term;
    this.#term = null;
    term?.abort(new Error('the leader term ended'));
    return term !== null;
  }

  async #read(signal: AbortSignal): Promise<V1Lease | null> {
    try {
      return await this.#o.api.readNamespacedLease({ namespace: this.#o.namespace, name: this.#o.name }, bounded(signal));
    } catch (err) {
      if (apiCode(err) === 404) return null;
      throw err;
    }
  }

  async #tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const { api, namespace, name, identity } = this.#o;
    const now = new V1MicroTime();
    const durationSeconds = Math.max(1, Math.round(this.#o.leaseDurationMs / 1000));
    const lease = await this.#read(signal);
    if (!lease) {
      try {
        await api.createNamespacedLease(
          {
            namespace,
            body: {
              metadata: { name, namespace },
              spec: {
                holderIdentity: identity,
                leaseDurationSeconds: durationSeconds,
                acquireTime: now,
                renewTime: now,
                leaseTransitions: 0,
              },
            },
          },
          bounded(signal),
        );
        return true;
      } catch (err) {
        if (apiCode(err) === 409) return false;
        throw err;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const record = `${holder}|${spec.renewTime ? new Date(spec.renewTime).toISOString() : ''}`;
    if (this.#observed?.record !== record) this.#observed = { record, at: Date.now() };
    const holderDuration = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    const expired = holder === '' || Date.now() - this.#observed.at > holderDuration;
    if (holder !== identity && !expired) return false;

    const takingOver = holder !== identity;
    lease.spec = {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: durationSeconds,
      renewTime: now,
      ...(takingOver ? { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
    };
    try {
      await api.replaceNamespacedLease({ namespace, name, body: lease }, bounded(signal));
      return true;
    } catch (err) {
      if (apiCode(err) === 409) return false;
      throw err;
    }
  }
}

/**
 * Per-request options that abort the request (and the reading of its body) when `signal`
 * fires. client-node 2.x takes a signal only through a middleware (RequestContext.setSignal);
 * appended, so the KubeConfig's own middleware (authentication, the pooled dispatcher) stays.
 */
function bounded(signal: AbortSignal): ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx: RequestContext) => {
          ctx.setSignal(signal);
          return new Observable(Promise.resolve(ctx));
        },
        post: (ctx: ResponseContext) => new Observable(Promise.resolve(ctx)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}
