/**
 * The Kubernetes client configuration the manager uses, with one fix over @kubernetes/client-node.
 *
 * client-node 2.0.1 builds a fresh undici Agent inside `applySecurityAuthentication` for every API
 * call (`KubeConfig.createDispatcher`; only the websocket agents are cached), so every request
 * opens a new TLS connection to the apiserver and the process's native memory grows with the
 * number of requests made: 3,000 requests took a bare client from 192 to 529 MiB RSS with a
 * 70 MiB heap (bench/manager-memory.ts shows the manager at scale). Here one Agent per distinct
 * TLS configuration is kept and reused, as client-go does with its transport cache. It speaks
 * HTTP/1.1 (one request per connection at a time, as client-node's own https.Agent did): over
 * undici 8's default HTTP/2, every request and watch multiplexed onto one connection, and a pod
 * watch stalled for good after ~64 KB of events while creates went on (bench/manager-admission.ts).
 *
 * A pool brings the failure mode client-go answers with HTTP/2 pings: an idle connection that
 * died silently (a NAT or load balancer dropped it) takes the next request with it. So requests
 * give up when no response headers arrive within HEADERS_TIMEOUT_MS (the apiserver's own
 * request timeout is 60 s), and resetConnections() lets a caller that has seen the connection
 * go silent (the informer's watchdog) start over on fresh connections at once.
 */
import { createHash } from 'node:crypto';
import { KubeConfig, type Cluster } from '@kubernetes/client-node';
import { Agent, type Dispatcher } from 'undici';

type AgentOptions = Parameters<KubeConfig['createDispatcherOptions']>[1];
type CreateDispatcher = (cluster: Cluster | null, agentOptions: AgentOptions) => Dispatcher | undefined;

/** A request whose response headers have not arrived after this long fails. */
const HEADERS_TIMEOUT_MS = 60_000;

export class PooledKubeConfig extends KubeConfig {
  readonly #dispatchers = new Map<string, Dispatcher | undefined>();

  constructor() {
    super();
    // createDispatcher is private in the typings, so it is wrapped on the instance rather than
    // overridden; test/integration/kube-client.test.ts fails if a client-node upgrade renames it.
    const self = this as unknown as { createDispatcher?: CreateDispatcher };
    const build = self.createDispatcher?.bind(this);
    if (!build) return;
    self.createDispatcher = (cluster, agentOptions) => {
      // the key covers everything the Agent is built from, so rotated client certificates
      // (exec plugins, reloaded files) get a new Agent instead of a stale one
      const options = this.createDispatcherOptions(cluster, agentOptions);
      const key = dispatcherKey(options);
      if (!this.#dispatchers.has(key)) {
        // the plain TLS case (every in-cluster and kind config) gets the timeout; proxies keep
        // client-node's own construction
        this.#dispatchers.set(
          key,
          options.type === 'agent'
            ? new Agent({ connect: options.connect, headersTimeout: HEADERS_TIMEOUT_MS, allowH2: false })
            : build(cluster, agentOptions),
        );
      }
      return this.#dispatchers.get(key);
    };
  }

  /** Number of distinct connection pools built so far. */
  get dispatcherCount(): number {
    return this.#dispatchers.size;
  }

  /**
   * New requests go out on fresh connections; the old pools close once their in-flight requests
   * end (a request stuck on a dead connection ends at the headers timeout).
   */
  resetConnections(): void {
    const old = [...this.#dispatchers.values()];
    this.#dispatchers.clear();
    for (const d of old) d?.close().catch(() => undefined);
  }

  /** Closes the pooled connections (after the last request). */
  async close(): Promise<void> {
    const dispatchers = [...this.#dispatchers.values()];
    this.#dispatchers.clear();
    await Promise.all(dispatchers.map((d) => d?.close()));
  }
}

function dispatcherKey(options: ReturnType<KubeConfig['createDispatcherOptions']>): string {
  const hash = createHash('sha256');
  const feed = (value: unknown): void => {
    if (value === undefined || value === null) hash.update('\0-');
    else if (Buffer.isBuffer(value) || typeof value === 'string') hash.update(`\0${value.length}:`).update(value);
    else if (Array.isArray(value)) value.forEach(feed);
    else if (typeof value === 'object') {
      for (const k of Object.keys(value).sort()) {
        hash.update(`\0${k}=`);
        feed((value as Record<string, unknown>)[k]);
      }
    } else hash.update(`\0${String(value)}`);
  };
  feed(options);
  return hash.digest('hex');
}
