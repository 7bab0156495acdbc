/**
 * The manager dying and being replaced: SIGKILL mid-job and restart (the runner's callback
 * arrives while no manager listens), and two replicas with leader election (one reconciles;
 * kill it and the other takes over within the lease).
 */
import { CoordinationV1Api } from '@kubernetes/client-node';
import { expect } from 'chai';
import { request } from 'undici';
import { type ManagerEnv, type ManagerProcess, randomName, startManagerEnv } from '../support/manager-env.js';
import { waitFor } from '../support/processes.js';
import type { PagewrightJob } from '../../manager/resource.js';

const finished = (j: PagewrightJob) => ['Succeeded', 'Failed', 'Cancelled'].includes(j.status.phase ?? '');

async function metric(m: ManagerProcess, name: string): Promise<number> {
  const res = await request(`${m.url}/metrics`);
  const text = await res.body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').pop()) : NaN;
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
    await waitFor('runner callback refused', async () => /result callback failed, retrying/.test(await env.kubelet.logs(env.namespace, pod.metadata!.name!)), 30_000, 100);

    const restarted = await env.startManager({ port: manager.port });
    const done = await env.waitForJob(name, 'finished', finished, 60_000);
    expect(done.status, await env.diagnostics()).to.include({ phase: 'Succeeded', attempt: 1, reportedAttempt: 1, filesChanged: 1 });
    expect((await env.jobPods(done.metadata.uid)).map((p) => p.metadata?.name)).to.deep.equal([pod.metadata?.name]);
    const runnerLog = await env.kubelet.logs(env.namespace, pod.metadata!.name!);
    expect(runnerLog).to.match(/result delivered to manager/);
    const logs = await env.managerLogs();
    const recorded = logs.split('\n').filter((l) => l.includes('"result callback"') && l.includes(`/${name}"`) && l.includes('"outcome":"recorded"'));
    expect(recorded).to.have.length(1);
    await restarted.kill('SIGTERM');
    expect(await restarted.exited).to.equal(0);
  });

  it('recovers a result whose callback never arrived from the manifest in storage', async () => {
    const name = randomName('manifest');
    // no manager: the runner gives up calling back after 2 s and exits; its manifest is in storage
    const manager = await env.startManager({ env: { PAGEWRIGHT_RUNNER_ENV: JSON.stringify({ PAGEWRIGHT_CALLBACK_TIMEOUT_MS: '2000', PAGEWRIGHT_CODEX_REQUEST_RETRIES: '0' }) } });
    await env.createJob(name, { siteId: 'site-b', prompt: 'MODEL:gate then edit' });
    const running = await env.waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex', 60_000);
    await manager.kill('SIGKILL');
    env.modelGate.open();
    const pod = (await env.jobPods(running.metadata.uid))[0]!;
    await waitFor('runner pod finished', async () => ['Succeeded', 'Failed'].includes((await env.core.readNamespacedPod({ namespace: env.namespace, name: pod.metadata!.name! })).status?.phase ?? ''), 60_000, 200);
    expect(await env.kubelet.logs(env.namespace, pod.metadata!.name!)).to.not.match(/result delivered to manager/);

    const restarted = await env.startManager();
    const done = await env.waitForJob(name, 'finished', finished, 60_000);
    expect(done.status, await env.diagnostics()).to.include({ phase: 'Succeeded', attempt: 1, reportedAttempt: 1, filesChanged: 1 });
    expect(await env.managerLogs()).to.match(/result recovered from the manifest in storage/);
    await restarted.kill('SIGTERM');
  });

  it('with two replicas only the leader reconciles; killing it hands over within the lease duration', async () => {
    const election = { PAGEWRIGHT_LEADER_ELECTION: 'true', PAGEWRIGHT_LEASE_DURATION_SECONDS: '4', PAGEWRIGHT_LEASE_RENEW_SECONDS: '1', PAGEWRIGHT_LEASE_NAME: 'pw-test-leader' };
    const a = await env.startManager({ env: { ...election, PAGEWRIGHT_POD_NAME: 'manager-a' } });
    const b = await env.startManager({ env: { ...election, PAGEWRIGHT_POD_NAME: 'manager-b' } });
    const leases = env.cp.kubeConfig().makeApiClient(CoordinationV1Api);
    const holder = async () => (await leases.readNamespacedLease({ namespace: env.namespace, name: 'pw-test-leader' }).catch(() => null))?.spec?.holderIdentity ?? null;
    const first = await waitFor('a leader', async () => holder(), 15_000, 100);
    const [leader, follower] = first === 'manager-a' ? [a, b] : [b, a];
    await waitFor('leader metric', async () => (await metric(leader, 'pagewright_leader')) === 1, 10_000, 100);
    expect(await metric(follower, 'pagewright_leader')).to.equal(0);

    const one = randomName('leader');
    await env.createJob(one, { siteId: 'site-c', prompt: 'Edit under the first leader' });
    expect((await env.waitForJob(one, 'finished', finished, 60_000)).status.phase).to.equal('Succeeded');
    expect(await metric(follower, 'pagewright_reconcile_duration_seconds_count{result="ok"}').catch(() => NaN)).to.satisfy((n: number) => Number.isNaN(n) || n === 0);

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
