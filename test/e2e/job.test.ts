/**
 * What a user does: `kubectl apply -f examples/job.yaml`, `kubectl wait --for=condition=Complete`,
 * `kubectl get pwj`, then reads the edited site from storage. Real apiserver, manager, runner
 * pod (local kubelet), storage and Codex CLI; only the model is scripted.
 */
import { expect } from 'chai';
import { type ManagerEnv, EXAMPLE_JOB, startManagerEnv } from '../support/manager-env.js';
import { readOutputFile } from '../support/outputs.js';

describe('e2e: kubectl apply -f examples/job.yaml', function () {
  this.timeout(180_000);
  let env: ManagerEnv;

  before(async () => {
    env = await startManagerEnv('e2e');
    await env.startManager();
  });
  after(async () => env?.stop());

  it('runs the example job to Complete and stores the edited site', async () => {
    const ns = ['-n', env.namespace];
    await env.cp.kubectl([...ns, 'apply', '-f', EXAMPLE_JOB]);
    await env.waitForJob('bakery-holiday-hours', 'finished', (j) => ['Succeeded', 'Failed', 'Cancelled'].includes(j.status.phase ?? ''), 120_000);
    const wait = await env.cp.kubectl([...ns, 'wait', '--for=condition=Complete', '--timeout=10s', 'pwj/bakery-holiday-hours'], { allowFailure: true });
    const job = await env.getJob('bakery-holiday-hours');
    expect(wait.code, `kubectl wait: ${wait.stderr}\nstatus: ${JSON.stringify(job.status, null, 1)}\n${await env.diagnostics()}`).to.equal(0);

    const s = job.status;
    expect(s.phase).to.equal('Succeeded');
    expect(s.attempt).to.equal(1);
    expect(s.filesChanged).to.equal(1);
    expect(s.files).to.deep.equal(['index.html']);
    expect(s.summary).to.match(/Added a note to index.html/);
    expect(s.baseVersion).to.equal(env.baseVersion);
    expect(s.outputVersion).to.match(/^[a-f0-9]{64}$/);
    expect(s.observedGeneration).to.equal(job.metadata.generation);
    expect(s.conditions?.find((c) => c.type === 'Complete')?.status).to.equal('True');
    expect(Object.keys(s.phaseDurationsMs ?? {})).to.include('executing_codex');

    const output = await readOutputFile(env.storage.admin, job.metadata.uid, 'index.html');
    expect(output.version).to.equal(s.outputVersion);
    expect(output.text).to.contain('class="pagewright-note"');
    expect(output.text).to.contain('closed from December 24');

    const table = await env.cp.kubectl([...ns, 'get', 'pwj']);
    const [header, row] = table.stdout.trim().split('\n');
    expect(header?.split(/\s+/)).to.deep.equal(['NAME', 'SITE', 'PHASE', 'STEP', 'FILES', 'AGE']);
    expect(row?.split(/\s+/).slice(0, 5)).to.deep.equal(['bakery-holiday-hours', 'harbor-lane-bakery', 'Succeeded', 'completed', '1']);
    const wide = await env.cp.kubectl([...ns, 'get', 'pwjob', '-o', 'wide']);
    expect(wide.stdout).to.match(/SUMMARY/).and.to.contain('Added a note');

    // the token Secret is gone once the job finished; its pod stays for `kubectl logs`
    const secrets = await env.core.listNamespacedSecret({ namespace: env.namespace, labelSelector: `pagewright.dev/job=${job.metadata.uid}` });
    expect(secrets.items).to.have.length(0);
    const events = await env.cp.kubectl([...ns, 'get', 'events', '--field-selector', `involvedObject.name=bakery-holiday-hours`, '-o', 'jsonpath={.items[*].reason}']);
    expect(events.stdout.split(' ')).to.include.members(['Scheduled', 'Succeeded']);
  });
});
