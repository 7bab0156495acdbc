/**
 * Leader election on a coordination.k8s.io/v1 Lease, client-go's algorithm in small: the holder
 * renews every renewMs; others take over once the record has not changed for leaseDuration (by
 * their own clock, so clock skew between nodes does not matter); every write carries the read
 * resourceVersion, so two candidates never both win. A leader that could not renew within
 * leaseDuration stops leading before anyone else may start.
 */
import { type CoordinationV1Api, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';
import { apiCode } from './status.js';

export interface LeaderElectorOptions {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewMs: number;
  logger: Logger;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  readonly #o: LeaderElectorOptions;
  #leading = false;
  #stopped = false;
  #lastRenew = 0;
  #observed: { record: string; at: number } | null = null;
  #timer: NodeJS.Timeout | null = null;
  #loop: Promise<void> | null = null;

  constructor(opts: LeaderElectorOptions) {
    this.#o = opts;
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  start(): void {
    this.#loop = this.#tick();
  }

  /** Stops campaigning; if leading, gives the Lease up so a successor need not wait it out. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#loop;
    if (!this.#leading) return;
    this.#setLeading(false);
    try {
      const lease = await this.#read();
      if (lease?.spec?.holderIdentity === this.#o.identity) {
        lease.spec.holderIdentity = '';
        lease.spec.leaseDurationSeconds = 1;
        lease.spec.renewTime = new V1MicroTime();
        await this.#o.api.replaceNamespacedLease({ namespace: this.#o.namespace, name: this.#o.name, body: lease });
        this.#o.logger.info('released the lease', { lease: this.#o.name });
      }
    } catch (err) {
      this.#o.logger.warn('could not release the lease', { error: String(err) });
    }
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    try {
      const held = await this.#tryAcquireOrRenew();
      if (held) {
        this.#lastRenew = Date.now();
        this.#setLeading(true);
      } else {
        this.#setLeading(false);
      }
    } catch (err) {
      this.#o.logger.warn('lease request failed', { error: String(err) });
    }
    if (this.#leading && Date.now() - this.#lastRenew > this.#o.leaseDurationMs) {
      this.#o.logger.error('could not renew the lease in time; stepping down', { lease: this.#o.name });
      this.#setLeading(false);
    }
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#loop = this.#tick();
    }, this.#o.renewMs);
  }

  #setLeading(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    this.#o.logger.info(leading ? 'became leader' : 'stopped leading', { lease: this.#o.name, identity: this.#o.identity });
    if (leading) this.#o.onStartedLeading();
    else this.#o.onStoppedLeading();
  }

  async #read(): Promise<V1Lease | null> {
    try {
      return await this.#o.api.readNamespacedLease({ namespace: this.#o.namespace, name: this.#o.name });
    } catch (err) {
      if (apiCode(err) === 404) return null;
      throw err;
    }
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, name, identity } = this.#o;
    const now = new V1MicroTime();
    const durationSeconds = Math.max(1, Math.round(this.#o.leaseDurationMs / 1000));
    const lease = await this.#read();
    if (!lease) {
      try {
        await api.createNamespacedLease({
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
        });
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
      await api.replaceNamespacedLease({ namespace, name, body: lease });
      return true;
    } catch (err) {
      if (apiCode(err) === 409) return false;
      throw err;
    }
  }
}
