/**
 * PooledKubeConfig against a real apiserver, connections counted by a TCP proxy in front of it.
 * The second case pins the upstream behaviour the pool works around: when a client-node release
 * stops opening a connection per request, it fails, and common/kube-client.ts can go.
 */
import { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import pLimit from 'p-limit';
import { expect } from 'chai';
import { PooledKubeConfig } from '../../common/kube-client.js';
import { type ControlPlane, createNamespace, sharedControlPlane } from '../support/control-plane.js';
import { type CutProxy, startCutProxy } from '../support/cut-proxy.js';

describe('PooledKubeConfig on a real apiserver', function () {
  this.timeout(60_000);
  let cp: ControlPlane;
  let ns: string;
  let proxy: CutProxy;

  before(async () => {
    cp = await sharedControlPlane();
    ns = await createNamespace(cp, 'kube-client');
    proxy = await startCutProxy(new URL(cp.server));
  });
  after(async () => proxy?.close());

  const viaProxy = <T extends KubeConfig>(kc: T): T => {
    kc.loadFromString(cp.kubeConfig().exportConfig().replace(cp.server, proxy.url));
    return kc;
  };
  const calls = async (kc: KubeConfig, n: number) => {
    const core = kc.makeApiClient(CoreV1Api);
    const before = proxy.connections;
    for (let i = 0; i < n; i++) await core.listNamespacedConfigMap({ namespace: ns });
    // concurrent calls share the pool too, opening at most one connection each
    await Promise.all(Array.from({ length: 8 }, () => core.listNamespacedConfigMap({ namespace: ns })));
    return proxy.connections - before;
  };

  it('reuses connections across API calls', async () => {
    const kc = viaProxy(new PooledKubeConfig());
    const opened = await calls(kc, 40);
    expect(opened, 'connections for 48 calls').to.be.at.most(9);
    expect(kc.dispatcherCount).to.equal(1);
    await kc.close();
  });

  it('keeps a pod watch delivering while 32 concurrent creates share the pool', async () => {
    // over one multiplexed HTTP/2 connection (undici 8's default) this watch stalled for good
    // after a few dozen events; the pool speaks HTTP/1.1, one request per connection at a time
    const kc = new PooledKubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    const core = kc.makeApiClient(CoreV1Api);
    const watchNs = await createNamespace(cp, 'kube-client-watch');
    const names = new Set<string>();
    const watch = await new Watch(kc).watch(
      `/api/v1/namespaces/${watchNs}/pods`,
      {},
      (type, obj: { metadata: { name: string } }) => {
        if (type === 'ADDED') names.add(obj.metadata.name);
      },
      () => undefined,
    );
    const limit = pLimit(32);
    const env = Array.from({ length: 40 }, (_, k) => ({ name: `VAR_${k}`, value: 'v'.repeat(40) }));
    const pod = (i: number) => ({
      metadata: { name: `pod-${i}` },
      spec: { containers: [{ name: 'runner', image: 'pagewright-runner:0.1.0', env }] },
    });
    await Promise.all(Array.from({ length: 300 }, (_, i) => limit(() => core.createNamespacedPod({ namespace: watchNs, body: pod(i) }))));
    const deadline = Date.now() + 20_000;
    while (names.size < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    watch.abort();
    expect(names.size, 'pods the watch saw').to.equal(300);
    await kc.close();
  });

  it('(upstream) plain client-node 2.0.1 opens a connection for every call', async () => {
    const opened = await calls(viaProxy(new KubeConfig()), 40);
    expect(opened).to.be.at.least(40);
  });

  it('builds a separate pool for a different client certificate', async () => {
    const kc = viaProxy(new PooledKubeConfig());
    const core = kc.makeApiClient(CoreV1Api);
    await core.listNamespacedConfigMap({ namespace: ns });
    const user = kc.getCurrentUser()!;
    // same identity re-encoded (trailing newline) is still a different byte string: a new pool
    Object.assign(user, { certData: Buffer.from(`${Buffer.from(user.certData!, 'base64').toString('utf8')}\n`).toString('base64') });
    await core.listNamespacedConfigMap({ namespace: ns });
    expect(kc.dispatcherCount).to.equal(2);
    await kc.close();
  });
});
