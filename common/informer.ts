/**
 * An informer that never silently stops watching. client-node 2.0.1's ListWatch reconnects by
 * itself after a normal close, a client timeout and 410 Gone, but any other error (a failed
 * list, a refused connection, a 5xx) stops it and only emits 'error'. This wrapper restarts it
 * with capped backoff, ignores the AbortError of its own stop(), and runs a watchdog that
 * replaces the ListWatch when nothing (not even a reconnect) happened for too long.
 *
 * Cached objects lose metadata.managedFields (as controller-runtime's TransformStripManagedFields
 * does): the manager never reads them and they are a large part of every object it holds.
 */
import { type KubeConfig, type KubernetesListObject, type KubernetesObject, ListWatch, Watch } from '@kubernetes/client-node';
import type { Logger } from './logger.js';
import { PooledKubeConfig } from './kube-client.js';

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
  /**
   * The handlers keep their own copy of every object (the JobCache's parsed jobs), so the
   * informer's cache keeps only what ListWatch itself reads (namespace, name, uid and
   * resourceVersion) and each object is held once; get() and list() then return those stubs.
   */
  cacheIdentityOnly?: boolean;
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
        // ListWatch cached this very object just before calling back, so this trims its cache
        if (obj.metadata?.managedFields) delete obj.metadata.managedFields;
        if (!current()) return;
        this.#activity();
        for (const h of this.#handlers[event]) h(obj);
        if (this.#o.cacheIdentityOnly && event !== 'delete') toIdentity(obj);
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
    // whatever silenced the watch most likely took the pooled idle connections too
    if (this.#o.kubeConfig instanceof PooledKubeConfig) this.#o.kubeConfig.resetConnections();
    const fresh = this.#create();
    this.#lw = fresh;
    this.#lastActivity = Date.now();
    void old.stop();
    fresh.start().catch((e: unknown) => this.#scheduleRestart(e));
  }
}

/** Trims, in place, an object ListWatch holds to the fields it compares objects by. */
function toIdentity(obj: KubernetesObject): void {
  const { namespace, name, uid, resourceVersion } = obj.metadata ?? {};
  for (const key of Object.keys(obj)) delete (obj as Record<string, unknown>)[key];
  obj.metadata = { namespace, name, uid, resourceVersion };
}

function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  if (err && typeof err === 'object') return JSON.stringify(err).slice(0, 300);
  return String(err);
}

/**
 * Lists in pages of `limit` items, as client-go's reflector does: the apiserver serves every page
 * from one snapshot, and no single response holds all 10,000 objects, so the list never needs
 * its whole JSON text and parsed copy in memory at once.
 */
export async function listInPages<T extends KubernetesObject>(
  page: (params: { limit: number; _continue?: string }) => Promise<KubernetesListObject<T>>,
  limit = 500,
): Promise<KubernetesListObject<T>> {
  const items: T[] = [];
  let token: string | undefined;
  for (;;) {
    const result = await page({ limit, ...(token ? { _continue: token } : {}) });
    for (const item of result.items) items.push(item);
    // typed lists (pods) come deserialized as `_continue`; custom objects arrive as raw JSON
    token = result.metadata?._continue ?? (result.metadata as { continue?: string } | undefined)?.continue;
    if (!token) return { ...result, items };
  }
}
