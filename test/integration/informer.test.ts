/**
 * The manager's informer against a real apiserver behind a TCP proxy the test controls: a
 * connection cut (watch dropped, lists refused) and a watch that silently stops delivering.
 * client-node's own ListWatch stops for good on the first and waits out its 30 s inactivity
 * timeout on the second; ours must see every object in both cases.
 */
import { CoreV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { expect } from 'chai';
import { silentLogger } from '../../common/logger.js';
import { ResilientInformer } from '../../common/informer.js';
import { PooledKubeConfig } from '../../common/kube-client.js';
import { type ControlPlane, createNamespace, sharedControlPlane } from '../support/control-plane.js';
import { type CutProxy, startCutProxy } from '../support/cut-proxy.js';
import { waitFor } from '../support/processes.js';

describe('ResilientInformer on a real apiserver', function () {
  this.timeout(90_000);
  let cp: ControlPlane;
  let core: CoreV1Api;
  let ns: string;
  let proxy: CutProxy;
  let informer: ResilientInformer<V1ConfigMap>;
  const restarts: string[] = [];

  before(async () => {
    cp = await sharedControlPlane();
    core = cp.kubeConfig().makeApiClient(CoreV1Api);
    ns = await createNamespace(cp, 'informer');
    proxy = await startCutProxy(new URL(cp.server));
    const viaProxy = new PooledKubeConfig(); // the manager's client: pooled connections survive the faults too
    viaProxy.loadFromString(cp.kubeConfig().exportConfig().replace(cp.server, proxy.url));
    const proxied = viaProxy.makeApiClient(CoreV1Api);
    informer = new ResilientInformer<V1ConfigMap>({
      name: 'configmaps',
      kubeConfig: viaProxy,
      path: `/api/v1/namespaces/${ns}/configmaps`,
      list: () => proxied.listNamespacedConfigMap({ namespace: ns }),
      logger: silentLogger,
      watchdogMs: 2000,
      maxBackoffMs: 1000,
      onRestart: (cause) => restarts.push(cause),
    });
    await informer.start();
  });
  after(async () => {
    await informer?.stop();
    await proxy?.close();
  });

  const create = (name: string) => core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name }, data: { a: 'b' } } });
  const seen = (name: string, timeoutMs = 15_000) => waitFor(`informer sees ${name}`, async () => informer.get(name, ns), timeoutMs, 50);

  it('sees objects created while the apiserver was unreachable, once it is back', async () => {
    restarts.length = 0;
    await create('before-cut');
    await seen('before-cut');
    await proxy.cut();
    await create('during-cut');
    // a relist begun after the object existed was refused, so the informer really was cut off
    // (had that list gone through, it would have brought the object in): the second failure
    // counted after the create is of an attempt started after the first one, so after the create
    const failures = () => restarts.filter((c) => c === 'error').length;
    const afterCreate = failures();
    await waitFor('a refused relist after the object was created', async () => failures() >= afterCreate + 2, 15_000, 50);
    expect(informer.get('during-cut', ns)).to.equal(undefined);
    await proxy.restore();
    await seen('during-cut');
    await create('after-cut');
    await seen('after-cut');
    expect(restarts).to.include('error');
  });

  it('replaces a watch that silently stopped delivering events', async () => {
    await create('before-freeze');
    await seen('before-freeze');
    restarts.length = 0;
    proxy.freezeExisting();
    await create('during-freeze');
    await seen('during-freeze', 10_000); // well before client-node's 30 s inactivity timeout
    expect(restarts).to.include('watchdog');
  });
});
