/**
 * The manager dying and being replaced: SIGKILL mid-job and restart (the runner's callback
 * arrives while no manager listens), a job deleted while no manager runs, and two replicas with
 * leader election (one reconciles; kill it and the other takes over within the lease). On the
 * real node, whose kube-controller-manager garbage-collects what a deleted owner leaves.
 */
import { CoordinationV1Api } from '@kubernetes/client-node';
import { expect } from 'chai';
import { request } from 'undici';
import { type ManagerEnv, type ManagerProcess, randomName, startManagerEnv } from '../support/manager-env.js';
import { waitFor } from '../support/processes.js';
import type { PagewrightJob } from '../../common/job-resource.js';

const finished = (j: PagewrightJob) => ['Succeeded', 'Failed', 'Cancelled'].includes(j.status.phase ?? '');

/**
 * One sample from a manager's /metrics: `family` must be exported (a renamed metric fails here
 * instead of reading as "no sample"); undefined when the family has no sample with these labels.
 */
async function metric(m: ManagerProcess, family: string, sample = family): Promise<number | undefined> {
  const res = await request(`${m.url}/metrics`);
  const text = await res.body.text();
  expect(text, `${family} is exported`).to.match(new RegExp(`^# TYPE ${family} `, 'm'));
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

describe('manager restarts and leader election', function () {
  this.timeout(180_000);
  let env: ManagerEnv;

  before(async () => {
    env = await startManagerEnv('resil');
  });
  after(async () => env?.stop());

  beforeEach(() => env.modelGate.close());

  it('survives SIGKILL mid-job: the callback sent while it was down is not lost, and there is exactly one result', async () => {
    const manager = await env.startManager();
    const name = randomName('restart');
    await env.createJob(name, { siteId: 'site-a', prompt: 'MODEL:gate then edit', retries: 2 });
    const running = await env.waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex', 60_000);
    const pod = (await env.jobPods(running.metadata.uid))[0]!;

    await manager.kill('SIGKILL');
    env.modelGate.open(); // the runner finishes and calls back into the void
    await waitFor(
      'runner callback refused',
      async () => /result callback failed, retrying/.test(await env.podLogs(pod.metadata!.name!)),
      30_000,
      100,
    );

    const restarted = await env.startManager({ port: manager.port });
    const done = await env.waitForJob(name, 'finished', finished, 60_000);
    expect(done.status, await env.diagnostics()).to.include({ phase: 'Succeeded', attempt: 1, reportedAttempt: 1, filesChanged: 1 });
    expect((await env.jobPods(done.metadata.uid)).map((p) => p.metadata?.name)).to.deep.equal([pod.metadata?.name]);
    const runnerLog = await env.podLogs(pod.metadata!.name!);
    expect(runnerLog).to.match(/result delivered to manager/);
    const logs = await env.managerLogs();
    const recorded = logs
      .split('\n')
      .filter((l) => l.includes('"result callback"') && l.includes(`/${name}"`) && l.includes('"outcome":"recorded"'));
    expect(recorded).to.have.length(1);
    await restarted.kill('SIGTERM');
    expect(await restarted.exited).to.equal(0);
  });

  it('recovers a result whose callback never arrived from the manifest in storage', async () => {
    const name = randomName('manifest');
    // no manager: the runner gives up calling back after 2 s and exits; its manifest is in storage
    const manager = await env.startManager({
      env: { PAGEWRIGHT_RUNNER_ENV: JSON.stringify({ PAGEWRIGHT_CALLBACK_TIMEOUT_MS: '2000', PAGEWRIGHT_CODEX_REQUEST_RETRIES: '0' }) },
    });
    await env.createJob(name, { siteId: 'site-b', prompt: 'MODEL:gate then edit' });
    const running = await env.waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex', 60_000);
    await manager.kill('SIGKILL');
    env.modelGate.open();
    const pod = (await env.jobPods(running.metadata.uid))[0]!;
    await waitFor(
      'runner pod finished',
      async () =>
        ['Succeeded', 'Failed'].includes(
          (await env.core.readNamespacedPod({ namespace: env.namespace, name: pod.metadata!.name! })).status?.phase ?? '',
        ),
      60_000,
      200,
    );
    expect(await env.podLogs(pod.metadata!.name!)).to.not.match(/result delivered to manager/);

    const restarted = await env.startManager();
    const done = await env.waitForJob(name, 'finished', finished, 60_000);
    expect(done.status, await env.diagnostics()).to.include({ phase: 'Succeeded', attempt: 1, reportedAttempt: 1, filesChanged: 1 });
    expect(await env.managerLogs()).to.match(/result recovered from the manifest in storage/);
    await restarted.kill('SIGTERM');
  });

  it('a job deleted while the manager is down: held by its finalizer, then its pod and Secret are gone once the manager is back', async () => {
    const manager = await env.startManager();
    const name = randomName('deldown');
    await env.createJob(name, { siteId: 'site-b', prompt: 'MODEL:hang until deleted' });
    const running = await env.waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex', 60_000);
    const pod = (await env.jobPods(running.metadata.uid))[0]!;
    expect(pod.metadata?.ownerReferences?.[0]).to.include({ uid: running.metadata.uid, controller: true, blockOwnerDeletion: true });
    await manager.kill('SIGKILL');

    await env.cp.kubectl(['-n', env.namespace, 'delete', 'pwj', name, '--wait=false']);
    const held = await env.getJob(name);
    expect(held.metadata.deletionTimestamp, 'the finalizer holds the job until a manager cleans up').to.be.a('string');
    expect(await env.runningContainers(pod.metadata!.uid!)).to.not.be.empty;

    const back = await env.startManager({ port: manager.port });
    await waitFor('job gone', async () => (await env.getJob(name).catch(() => null)) === null, 30_000, 200);
    await waitFor('pod gone', async () => (await env.jobPods(running.metadata.uid)).length === 0, 30_000, 200);
    await waitFor('containers gone', async () => (await env.runningContainers(pod.metadata!.uid!)).length === 0, 30_000, 200);
    const secrets = await env.core.listNamespacedSecret({
      namespace: env.namespace,
      labelSelector: `pagewright.dev/job=${running.metadata.uid}`,
    });
    expect(secrets.items).to.deep.equal([]);
    await back.kill('SIGTERM');
  });

  it('pods are owned by their job: the garbage collector removes them when the job goes without the manager', async () => {
    const manager = await env.startManager();
    const name = randomName('gc');
    await env.createJob(name, { siteId: 'site-c', prompt: 'MODEL:hang until collected' });
    const running = await env.waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex', 60_000);
    const pod = (await env.jobPods(running.metadata.uid))[0]!;
    await manager.kill('SIGKILL');
    // an administrator's last resort: drop the finalizer; only ownerReferences are left to clean up
    await env.cp.kubectl(['-n', env.namespace, 'patch', 'pwj', name, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
    await env.cp.kubectl(['-n', env.namespace, 'delete', 'pwj', name, '--wait=true', '--timeout=30s']);
    await waitFor('pod garbage-collected', async () => (await env.jobPods(running.metadata.uid)).length === 0, 60_000, 200);
    await waitFor(
      'Secret garbage-collected',
      async () =>
        (await env.core.listNamespacedSecret({ namespace: env.namespace, labelSelector: `pagewright.dev/job=${running.metadata.uid}` }))
          .items.length === 0,
      60_000,
      200,
    );
    await waitFor('containers gone', async () => (await env.runningContainers(pod.metadata!.uid!)).length === 0, 30_000, 200);
  });

  it('with two replicas only the leader reconciles; killing it hands over within the lease duration', async () => {
    const election = {
      PAGEWRIGHT_LEADER_ELECTION: 'true',
      PAGEWRIGHT_LEASE_DURATION_SECONDS: '4',
      PAGEWRIGHT_LEASE_RENEW_SECONDS: '1',
      PAGEWRIGHT_LEASE_NAME: 'pw-test-leader',
    };
    const a = await env.startManager({ env: { ...election, PAGEWRIGHT_POD_NAME: 'manager-a' } });
    const b = await env.startManager({ env: { ...election, PAGEWRIGHT_POD_NAME: 'manager-b' } });
    const leases = env.cp.kubeConfig().makeApiClient(CoordinationV1Api);
    const holder = async () =>
      (await leases.readNamespacedLease({ namespace: env.namespace, name: 'pw-test-leader' }).catch(() => null))?.spec?.holderIdentity ??
      null;
    const first = await waitFor('a leader', async () => holder(), 15_000, 100);
    const [leader, follower] = first === 'manager-a' ? [a, b] : [b, a];
    await waitFor('leader metric', async () => (await metric(leader, 'pagewright_leader')) === 1, 10_000, 100);
    expect(await metric(follower, 'pagewright_leader')).to.equal(0);

    const one = randomName('leader');
    await env.createJob(one, { siteId: 'site-c', prompt: 'Edit under the first leader' });
    expect((await env.waitForJob(one, 'finished', finished, 60_000)).status.phase).to.equal('Succeeded');
    // the leader reconciled it, the follower did not reconcile anything
    const reconciled = (m: ManagerProcess) =>
      metric(m, 'pagewright_reconcile_duration_seconds', 'pagewright_reconcile_duration_seconds_count{result="ok"}');
    expect(await reconciled(leader)).to.be.greaterThan(0);
    expect((await reconciled(follower)) ?? 0).to.equal(0);

    const killedAt = Date.now();
    await leader.kill('SIGKILL');
    const next = await waitFor('a new leader', async () => ((await holder()) !== first ? holder() : null), 15_000, 100);
    const handover = Date.now() - killedAt;
    expect(handover).to.be.below(4000 + 1500); // lease duration + one renew period (and poll slack)
    expect(next).to.not.equal(first);

    const two = randomName('leader');
    await env.createJob(two, { siteId: 'site-c', prompt: 'Edit under the second leader' });
    expect((await env.waitForJob(two, 'finished', finished, 60_000)).status.phase).to.equal('Succeeded');
    expect(await metric(follower, 'pagewright_leader')).to.equal(1);

    // a graceful stop releases the Lease at once
    await follower.kill('SIGTERM');
    expect(await follower.exited).to.equal(0);
    expect(await holder()).to.equal('');
  });
});
