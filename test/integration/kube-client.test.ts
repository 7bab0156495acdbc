/**
 * PooledKubeConfig against a real apiserver, connections counted by a TCP proxy in front of it.
 * The second case pins the upstream behaviour the pool works around: when a client-node release
 * stops opening a connection per request, it fails, and manager/kube-client.ts can go.
 */
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { expect } from 'chai';
import { PooledKubeConfig } from '../../manager/kube-client.js';
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
    Object.assign(user, { certData: Buffer.from(Buffer.from(user.certData!, 'base64').toString('utf8') + '\n').toString('base64') });
    await core.listNamespacedConfigMap({ namespace: ns });
    expect(kc.dispatcherCount).to.equal(2);
    await kc.close();
  });

  it('fails a request stuck on a silently dead connection at the headers timeout, then recovers', async () => {
    const kc = viaProxy(new PooledKubeConfig({ headersTimeoutMs: 1000 }));
    const core = kc.makeApiClient(CoreV1Api);
    await core.listNamespacedConfigMap({ namespace: ns });
    proxy.freezeExisting(); // the pooled keep-alive connection stops moving bytes
    const started = Date.now();
    const err = await core.listNamespacedConfigMap({ namespace: ns }).then(() => null, (e: unknown) => e as Error);
    expect(err, 'request on the frozen connection').to.be.instanceOf(Error);
    expect(Date.now() - started).to.be.below(10_000);
    await core.listNamespacedConfigMap({ namespace: ns }); // the dead connection was dropped
    await kc.close();
  });
});
