/**
 * StatusWriter on a real apiserver: a transition computed from a stale copy of a job (the
 * informer cache lags the manager's own writes) conflicts, is re-decided on the fresh object and,
 * when that object already made the transition, reports that this call wrote nothing. The
 * reconciler counts a job's end (metrics, Events, log) only when the write was its own.
 */
import { CustomObjectsApi } from '@kubernetes/client-node';
import { expect } from 'chai';
import { JobResult } from '../../common/schemas.js';
import { GROUP, PLURAL, type PagewrightJob, VERSION } from '../../common/job-resource.js';
import { StatusWriter } from '../../manager/status.js';
import * as t from '../../manager/transitions.js';
import { type ControlPlane, createNamespace, sharedControlPlane } from '../support/control-plane.js';
import { jobResult } from '../support/job-result.js';
import { ensureCrd } from '../support/manager-env.js';

describe('StatusWriter on a real apiserver', function () {
  this.timeout(60_000);
  let cp: ControlPlane;
  let custom: CustomObjectsApi;
  let writer: StatusWriter;
  let namespace: string;

  before(async () => {
    cp = await sharedControlPlane();
    await ensureCrd(cp);
    namespace = await createNamespace(cp, 'status-writer');
    custom = cp.kubeConfig().makeApiClient(CustomObjectsApi);
    writer = new StatusWriter(custom);
  });

  async function runningJobWithResult(name: string): Promise<PagewrightJob> {
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'PagewrightJob',
        metadata: { name },
        spec: { siteId: 'site-a', prompt: 'edit the page' },
      },
    });
    let job = await writer.get(namespace, name);
    for (const change of [t.scheduled(1, `${name}-1`), t.running(1)]) {
      const update = await writer.update(job, change);
      expect(update.written).to.equal(true);
      job = update.job;
    }
    const result = jobResult(job.metadata.uid, 1, { summary: 'Added a note', phase_durations_ms: { executing_codex: 1200 } });
    const reported = await writer.update(job, t.resultReported(JobResult.parse(result)));
    expect(reported.written).to.equal(true);
    return reported.job;
  }

  it('writes a transition once: a second try from the stale copy finds it made and says it wrote nothing', async () => {
    const stale = await runningJobWithResult('ends-once');
    const first = await writer.update(stale, t.succeeded(1, undefined));
    expect(first.written).to.equal(true);
    expect(first.job.status.phase).to.equal('Succeeded');

    const second = await writer.update(stale, t.succeeded(1, undefined));
    expect(second.written).to.equal(false);
    expect(second.job.status.phase).to.equal('Succeeded');
    expect(second.job.metadata.resourceVersion).to.equal(first.job.metadata.resourceVersion);
    expect(second.job.status.completionTime).to.equal(first.job.status.completionTime);
  });

  it('re-decides a conflicting write on the fresh object and writes it when it still applies', async () => {
    const stale = await runningJobWithResult('re-decided');
    // another writer moves the object on (a progress-like write that leaves the phase alone)
    const moved = await writer.update(stale, (job) => ({ ...job.status, message: 'moved on by another writer' }));
    expect(moved.written).to.equal(true);
    const ended = await writer.update(stale, t.succeeded(1, undefined));
    expect(ended.written).to.equal(true);
    expect(ended.job.status.phase).to.equal('Succeeded');
    expect(Number(ended.job.metadata.resourceVersion)).to.be.greaterThan(Number(moved.job.metadata.resourceVersion));
  });

  it('writes nothing when the change leaves the status as it is', async () => {
    const job = await runningJobWithResult('unchanged');
    const same = await writer.update(job, (j) => j.status);
    expect(same.written).to.equal(false);
    expect(same.job.metadata.resourceVersion).to.equal(job.metadata.resourceVersion);
  });
});
