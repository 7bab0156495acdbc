/**
 * An informer that never silently stops watching. client-node 2.0.1's ListWatch reconnects by
 * itself after a normal close, a client timeout and 410 Gone, but any other error (a failed
 * list, a refused connection, a 5xx) stops it and only emits 'error'. This wrapper restarts it
 * with capped backoff, ignores the AbortError of its own stop(), and runs a watchdog that
 * replaces the ListWatch when nothing (not even a reconnect) happened for too long.
 */
import { type KubeConfig, type KubernetesListObject, type KubernetesObject, ListWatch, Watch } from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';

export type InformerEvent = 'add' | 'update' | 'delete';

export interface ResilientInformerOptions<T extends KubernetesObject> {
  name: string;
  kubeConfig: KubeConfig;
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  logger: Logger;
  /** Replace the watch when no event or reconnect was seen for this long (default 5 min). */
  watchdogMs?: number;
  maxBackoffMs?: number;
  onRestart?: (cause: 'error' | 'watchdog') => void;
}

export class ResilientInformer<T extends KubernetesObject> {
  readonly #o: ResilientInformerOptions<T>;
  readonly #handlers: Record<InformerEvent, Array<(obj: T) => void>> = { add: [], update: [], delete: [] };
  #lw: ListWatch<T>;
  #stopped = true;
  #backoffMs = 0;
  #lastActivity = Date.now();
  #restartTimer: NodeJS.Timeout | null = null;
  #watchdog: NodeJS.Timeout | null = null;

  constructor(opts: ResilientInformerOptions<T>) {
    this.#o = opts;
    this.#lw = this.#create();
  }

  on(event: InformerEvent, handler: (obj: T) => void): void {
    this.#handlers[event].push(handler);
  }

  /** Starts watching and resolves once the first list has landed in the cache. */
  async start(): Promise<void> {
    this.#stopped = false;
    this.#lastActivity = Date.now();
    await this.#lw.start();
    const watchdogMs = this.#o.watchdogMs ?? 5 * 60_000;
    this.#watchdog = setInterval(() => this.#checkWatchdog(watchdogMs), Math.min(watchdogMs / 2, 30_000));
    this.#watchdog.unref();
    await this.waitForSync();
  }

  get synced(): boolean {
    return this.#lw.latestResourceVersion() !== '';
  }

  async waitForSync(): Promise<void> {
    while (!this.synced) {
      if (this.#stopped) throw new Error(`${this.#o.name} informer stopped before it synced`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  list(): readonly T[] {
    return this.#lw.list();
  }

  get(name: string, namespace?: string): T | undefined {
    return this.#lw.get(name, namespace);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    if (this.#watchdog) clearInterval(this.#watchdog);
    await this.#lw.stop();
  }

  #create(): ListWatch<T> {
    const lw = new ListWatch<T>(this.#o.path, new Watch(this.#o.kubeConfig), this.#o.list, false, this.#o.labelSelector);
    const current = () => lw === this.#lw && !this.#stopped;
    for (const event of ['add', 'update', 'delete'] as const) {
      lw.on(event, (obj: T) => {
        if (!current()) return;
        this.#activity();
        for (const h of this.#handlers[event]) h(obj);
      });
    }
    lw.on('connect', () => {
      if (current()) this.#lastActivity = Date.now();
    });
    lw.on('error', (err: unknown) => {
      if (!current() || (err as Error | undefined)?.name === 'AbortError') return;
      this.#scheduleRestart(err);
    });
    return lw;
  }

  #activity(): void {
    this.#lastActivity = Date.now();
    this.#backoffMs = 0;
  }

  #scheduleRestart(err: unknown): void {
    this.#backoffMs = Math.min(this.#backoffMs > 0 ? this.#backoffMs * 2 : 500, this.#o.maxBackoffMs ?? 30_000);
    this.#o.logger.warn('watch failed; restarting', { informer: this.#o.name, error: describe(err), retry_in_ms: this.#backoffMs });
    this.#o.onRestart?.('error');
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#stopped) return;
      // the failed ListWatch has no request in flight, so starting it again is safe
      this.#lw.start().catch((e: unknown) => this.#scheduleRestart(e));
    }, this.#backoffMs);
  }

  #checkWatchdog(watchdogMs: number): void {
    if (this.#stopped || this.#restartTimer || Date.now() - this.#lastActivity < watchdogMs) return;
    this.#o.logger.warn('watch silent for too long; replacing it', { informer: this.#o.name, silent_ms: Date.now() - this.#lastActivity });
    this.#o.onRestart?.('watchdog');
    // a fresh ListWatch: restarting the old one races with its own late abort handler
    const old = this.#lw;
    const fresh = this.#create();
    this.#lw = fresh;
    this.#lastActivity = Date.now();
    void old.stop();
    fresh.start().catch((e: unknown) => this.#scheduleRestart(e));
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  if (err && typeof err === 'object') return JSON.stringify(err).slice(0, 300);
  return String(err);
}
