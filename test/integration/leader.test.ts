/**
 * Leader election (manager/leader.ts) on the real apiserver, with the failure that made two
 * leaders: the leader's connection to the apiserver goes silent. Its Lease requests hang (the
 * client's own headers timeout is 60 s), yet it must stop leading at its renew deadline, on a
 * timer, and a second candidate, reaching the apiserver directly, may take over only after that.
 * The silent connection is a TCP proxy between the leader and the apiserver that holds every
 * byte (test/support/gate-proxy.ts), or one that freezes the connections open now, as a NAT that
 * dropped them does (test/support/cut-proxy.ts).
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { expect } from 'chai';
import { PooledKubeConfig } from '../../common/kube-client.js';
import { silentLogger } from '../../common/logger.js';
import { LeaderElector } from '../../manager/leader.js';
import { type ControlPlane, createNamespace, sharedControlPlane } from '../support/control-plane.js';
import { startCutProxy } from '../support/cut-proxy.js';
import { type GateProxy, startGateProxy } from '../support/gate-proxy.js';
import { selfOwner } from '../support/control-plane/owner.js';
import { ensureCrd, randomName } from '../support/manager-env.js';
import { startManagerProcess } from '../support/manager-process.js';
import { getFreePort } from '../support/ports.js';
import { waitFor } from '../support/processes.js';

const LEASE_DURATION_MS = 3000;
const RENEW_DEADLINE_MS = 2000;
const RENEW_MS = 400;
/** Timer and event-loop slop allowed on top of the renew deadline. */
const SLOP_MS = 250;

interface Candidate {
  elector: LeaderElector;
  started: number[];
  stopped: number[];
}

describe('leader election on the real apiserver', function () {
  this.timeout(60_000);
  let cp: ControlPlane;
  let ns: string;
  let proxy: GateProxy;
  let scratch: string;
  const candidates: Candidate[] = [];

  before(async () => {
    cp = await sharedControlPlane();
    await ensureCrd(cp); // the manager test's informers list PagewrightJobs
    ns = await createNamespace(cp, 'leader');
    proxy = await startGateProxy(cp.server.replace(/^https:/, 'http:'));
    scratch = await mkdtemp(join(tmpdir(), 'pw-leader-'));
  });
  afterEach(async () => {
    proxy.release();
    await Promise.all(candidates.splice(0).map((c) => c.elector.stop()));
  });
  after(async () => {
    await proxy?.close();
    await rm(scratch, { recursive: true, force: true });
  });

  /** A candidate for `lease` that reaches the apiserver at `server` (default: directly). */
  function candidate(lease: string, identity: string, server = cp.server, onStarted?: () => void): Candidate {
    const kc = new PooledKubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    kc.loadFromOptions({
      clusters: kc.clusters.map((c) => ({ ...c, server })),
      users: kc.users,
      contexts: kc.contexts,
      currentContext: kc.currentContext,
    });
    const c: Candidate = { elector: undefined as unknown as LeaderElector, started: [], stopped: [] };
    c.elector = new LeaderElector({
      api: kc.makeApiClient(CoordinationV1Api),
      namespace: ns,
      name: lease,
      identity,
      leaseDurationMs: LEASE_DURATION_MS,
      renewDeadlineMs: RENEW_DEADLINE_MS,
      renewMs: RENEW_MS,
      logger: silentLogger,
      onStartedLeading: () => {
        c.started.push(Date.now());
        onStarted?.();
      },
      onStoppedLeading: () => c.stopped.push(Date.now()),
    });
    candidates.push(c);
    return c;
  }
  /** The gate proxy's address, as an https server (TLS passes through it). */
  const viaGate = () => `https://127.0.0.1:${new URL(proxy.url).port}`;
  const holder = async (lease: string) =>
    (await cp.kubeConfig().makeApiClient(CoordinationV1Api).readNamespacedLease({ namespace: ns, name: lease })).spec?.holderIdentity;

  it('a leader whose connection goes silent stops leading within its renew deadline, before another candidate takes over', async () => {
    const lease = randomName('lease');
    const a = candidate(lease, 'a', viaGate());
    a.elector.start();
    await waitFor('a leads', async () => a.elector.isLeader, 10_000, 20);
    expect(await holder(lease)).to.equal('a');
    let aLeadingWhenBStarted: boolean | null = null;
    const b = candidate(lease, 'b', cp.server, () => {
      aLeadingWhenBStarted = a.elector.isLeader;
    });
    b.elector.start();
    // b is a candidate that has seen a renew: the record it watches changes while a renews
    const seen = (await cp.kubeConfig().makeApiClient(CoordinationV1Api).readNamespacedLease({ namespace: ns, name: lease })).spec
      ?.renewTime;
    await waitFor(
      'a renews',
      async () =>
        (await cp.kubeConfig().makeApiClient(CoordinationV1Api).readNamespacedLease({ namespace: ns, name: lease })).spec?.renewTime !==
        seen,
      10_000,
      20,
    );
    expect(b.elector.isLeader).to.equal(false);

    const silentAt = Date.now();
    proxy.hold();
    await waitFor('a stops leading', async () => a.stopped.length > 0, 10_000, 10);
    const steppedDownAfter = a.stopped[0]! - silentAt;
    expect(a.elector.isLeader).to.equal(false);
    expect(steppedDownAfter, 'a stepped down at its renew deadline, not at a request timeout').to.be.at.most(RENEW_DEADLINE_MS + SLOP_MS);

    await waitFor('b leads', async () => b.elector.isLeader, 15_000, 20);
    expect(aLeadingWhenBStarted, 'a still led when b started').to.equal(false);
    expect(b.started[0]!).to.be.greaterThan(a.stopped[0]!);
    expect(await holder(lease)).to.equal('b');
    // b could not take over before the record had been unchanged for a lease duration
    expect(b.started[0]! - silentAt).to.be.at.least(LEASE_DURATION_MS - RENEW_MS);
  });

  it('a leader on a connection that died silently gives its request up at the deadline and goes on over a fresh one', async () => {
    const cut = await startCutProxy(new URL(cp.server));
    try {
      const lease = randomName('lease');
      const a = candidate(lease, 'a', cut.url);
      a.elector.start();
      await waitFor('a leads', async () => a.elector.isLeader, 10_000, 20);
      const silentAt = Date.now();
      cut.freezeExisting(); // the pooled connection stops moving bytes; a new one works
      await waitFor('a stops leading', async () => a.stopped.length > 0, 10_000, 10);
      expect(a.stopped[0]! - silentAt).to.be.at.most(RENEW_DEADLINE_MS + SLOP_MS);
      // the hung request was aborted, not waited out (the client's headers timeout is 60 s): each
      // request on a frozen connection ends at the deadline (the pool may hold more than one),
      // and the next, on a new connection, renews
      await waitFor('a leads again', async () => a.started.length === 2, 20_000, 10);
      expect(a.started[1]! - silentAt).to.be.below(10_000);
      expect(cut.connections).to.be.at.least(2);
    } finally {
      await cut.close();
    }
  });

  it('a graceful stop releases the Lease: the other candidate leads well within a lease duration', async () => {
    const lease = randomName('lease');
    const a = candidate(lease, 'a');
    a.elector.start();
    await waitFor('a leads', async () => a.elector.isLeader, 10_000, 20);
    const b = candidate(lease, 'b');
    b.elector.start();
    const stoppedAt = Date.now();
    await a.elector.stop();
    expect(a.stopped).to.have.length(1);
    await waitFor('b leads', async () => b.elector.isLeader, 10_000, 20);
    expect(b.started[0]! - stoppedAt).to.be.below(LEASE_DURATION_MS);
  });

  it('the manager with leader election, its renew deadline derived from the lease duration (2/3 of 4 s), takes the Lease', async () => {
    const lease = randomName('lease');
    const logPath = join(scratch, `${lease}.log`);
    const manager = await startManagerProcess({
      kubeconfigPath: cp.kubeconfigPath,
      namespace: ns,
      host: '127.0.0.1',
      port: await getFreePort(),
      owner: selfOwner(),
      // no job runs: storage and the gateway are never called
      storage: { url: 'http://127.0.0.1:9', adminToken: 'a'.repeat(16), tokenSecret: 't'.repeat(32) },
      gateway: { url: 'http://127.0.0.1:9/v1', secret: 'g'.repeat(32), reportToken: 'r'.repeat(16) },
      runnerImage: 'pagewright-runner:0.1.0',
      log: createWriteStream(logPath, { flags: 'a' }),
      logPath,
      env: {
        PAGEWRIGHT_LEADER_ELECTION: 'true',
        PAGEWRIGHT_LEASE_NAME: lease,
        PAGEWRIGHT_LEASE_DURATION_SECONDS: '4',
        PAGEWRIGHT_LEASE_RENEW_SECONDS: '1',
        PAGEWRIGHT_POD_NAME: 'manager-a',
      },
    });
    try {
      await waitFor('the manager leads', async () => (await holder(lease).catch(() => null)) === 'manager-a', 10_000, 50);
      await waitFor('it says so', async () => (await readFile(logPath, 'utf8')).includes('became leader'), 10_000, 50);
    } finally {
      await manager.kill('SIGTERM');
    }
    expect(await holder(lease), 'a graceful stop released it').to.equal('');
  });

  it('refuses timings where a leader could outlive its lease', () => {
    const api = cp.kubeConfig().makeApiClient(CoordinationV1Api);
    const make = (leaseDurationMs: number, renewDeadlineMs: number, renewMs: number) => () =>
      new LeaderElector({
        api,
        namespace: ns,
        name: 'x',
        identity: 'x',
        leaseDurationMs,
        renewDeadlineMs,
        renewMs,
        logger: silentLogger,
        onStartedLeading: () => undefined,
        onStoppedLeading: () => undefined,
      });
    expect(make(15_000, 15_000, 5000)).to.throw(/renew period < renew deadline < lease duration/);
    expect(make(15_000, 4000, 5000)).to.throw(/renew period < renew deadline < lease duration/);
    expect(make(15_000, 10_000, 5000)).to.not.throw();
  });
});
