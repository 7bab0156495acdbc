/**
 * Admission on the real control plane: max concurrency, one running job per site, priority
 * order. An independent watch on the PagewrightJobs records every phase the apiserver stored,
 * so overlap is judged from the API's history, not from the manager's own timestamps alone.
 */
import { Watch } from '@kubernetes/client-node';
import { expect } from 'chai';
import { type ManagerEnv, randomName, startManagerEnv } from '../support/manager-env.js';
import type { PagewrightJob } from '../../common/job-resource.js';

const finished = (j: PagewrightJob) => ['Succeeded', 'Failed', 'Cancelled'].includes(j.status.phase ?? '');
const active = (phase: string | undefined) => phase === 'Scheduled' || phase === 'Running';

describe('manager admission: concurrency, one job per site, priority', function () {
  this.timeout(240_000);
  let env: ManagerEnv;
  let stopWatch: (() => void) | null = null;

  before(async () => {
    env = await startManagerEnv('sched');
    await env.startManager({ env: { PAGEWRIGHT_MAX_CONCURRENT_JOBS: '3' } });
  });
  after(async () => {
    stopWatch?.();
    await env?.stop();
  });

  it('runs 5 jobs of one site one at a time in priority order, never more than 3 jobs at once', async () => {
    const phases = new Map<string, { site: string; phase: string | undefined }>();
    let maxActive = 0;
    let maxActivePerSite = 0;
    const order: string[] = [];
    const watch = await new Watch(env.cp.kubeConfig()).watch(
      `/apis/pagewright.dev/v1alpha1/namespaces/${env.namespace}/pagewrightjobs`,
      {},
      (_type, obj: PagewrightJob) => {
        const name = obj.metadata.name;
        const before = phases.get(name)?.phase;
        phases.set(name, { site: obj.spec.siteId, phase: obj.status?.phase });
        if (!active(before) && active(obj.status?.phase) && obj.spec.siteId === 'site-a') order.push(name);
        const all = [...phases.values()].filter((p) => active(p.phase));
        maxActive = Math.max(maxActive, all.length);
        const perSite = new Map<string, number>();
        for (const p of all) perSite.set(p.site, (perSite.get(p.site) ?? 0) + 1);
        maxActivePerSite = Math.max(maxActivePerSite, ...perSite.values(), 0);
      },
      () => undefined,
    );
    stopWatch = () => watch.abort();

    // a job holding site-a, so that all five are waiting when admission starts to choose
    const blocker = randomName('blocker');
    await env.createJob(blocker, { siteId: 'site-a', prompt: 'MODEL:gate hold the site', priority: 1000 });
    await env.waitForJob(blocker, 'running', (j) => j.status.runnerPhase === 'executing_codex', 60_000);
    const priorities = [3, 1, 5, 2, 4];
    const names = new Map<number, string>();
    for (const p of priorities) {
      const name = `prio-${p}-${randomName('j')}`;
      names.set(p, name);
      await env.createJob(name, { siteId: 'site-a', prompt: `Edit with priority ${p}`, priority: p });
    }
    // other sites share the three slots meanwhile
    const others = ['site-b', 'site-c', 'site-crash', 'site-oom'].map((site) => ({ site, name: randomName(site) }));
    for (const o of others) await env.createJob(o.name, { siteId: o.site, prompt: 'Edit another site' });
    for (const name of names.values()) {
      const queued = await env.waitForJob(name, 'Queued', (j) => j.status.phase !== undefined, 20_000);
      expect(queued.status.phase).to.equal('Queued');
      expect(queued.status.message).to.match(/waiting/);
    }

    env.modelGate.open();
    const all = [blocker, ...names.values(), ...others.map((o) => o.name)];
    const jobs = await Promise.all(all.map((n) => env.waitForJob(n, 'finished', finished, 200_000)));
    for (const j of jobs) expect(j.status.phase, `${j.metadata.name}: ${JSON.stringify(j.status)}`).to.equal('Succeeded');

    expect(order).to.deep.equal([blocker, ...[5, 4, 3, 2, 1].map((p) => names.get(p)!)]);
    expect(maxActivePerSite).to.equal(1);
    expect(maxActive).to.be.at.most(3);
    expect(maxActive).to.equal(3); // the limit was reached, so it was tested

    // the manager's own timestamps agree: site-a's jobs never overlapped
    const siteA = jobs
      .filter((j) => j.spec.siteId === 'site-a')
      .sort((a, b) => Date.parse(a.status.startTime!) - Date.parse(b.status.startTime!));
    for (let i = 1; i < siteA.length; i++) {
      expect(Date.parse(siteA[i]!.status.startTime!)).to.be.at.least(Date.parse(siteA[i - 1]!.status.completionTime!));
    }
  });
});
