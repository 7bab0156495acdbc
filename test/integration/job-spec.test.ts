/**
 * The PagewrightJob spec's immutable fields (deploy/k8s/crd.yaml's x-kubernetes-validations) on
 * the real apiserver, through kubectl as a user edits a job: an edit of what the job is (siteId,
 * prompt, baseVersion, model, budget, timeoutSeconds) is refused with the field's message, an
 * optional one set where it was absent or removed where it was set included; an edit of what
 * steers it (retries, priority, publish, cancel, ttlSecondsAfterFinished), a patch that changes
 * nothing, metadata and the status subresource go through.
 */
import { expect } from 'chai';
import { type ControlPlane, createNamespace, sharedControlPlane } from '../support/control-plane.js';
import { ensureCrd, randomName } from '../support/manager-env.js';

const SHA_A = 'a'.repeat(64);
const SHA_B = 'b'.repeat(64);

describe('PagewrightJob spec: immutable fields, on the real apiserver', function () {
  this.timeout(60_000);
  let cp: ControlPlane;
  let ns: string;

  before(async () => {
    cp = await sharedControlPlane();
    await ensureCrd(cp);
    ns = await createNamespace(cp, 'job-spec');
  });

  async function create(spec: Record<string, unknown>): Promise<string> {
    const name = randomName('spec');
    const job = { apiVersion: 'pagewright.dev/v1alpha1', kind: 'PagewrightJob', metadata: { name, namespace: ns }, spec };
    await cp.kubectl(['apply', '-f', '-'], { input: JSON.stringify(job) });
    return name;
  }
  /** kubectl patch --type=merge of the spec (null removes a field), as a user edits a job. */
  const patch = (name: string, spec: Record<string, unknown>) =>
    cp.kubectl(['-n', ns, 'patch', 'pwj', name, '--type=merge', '-p', JSON.stringify({ spec })], { allowFailure: true });
  const specOf = async (name: string) =>
    JSON.parse((await cp.kubectl(['-n', ns, 'get', 'pwj', name, '-o', 'json'])).stdout).spec as Record<string, unknown>;

  async function expectRefused(name: string, spec: Record<string, unknown>, field: string): Promise<void> {
    const before = await specOf(name);
    const res = await patch(name, spec);
    expect(res.code, `${JSON.stringify(spec)} was accepted`).to.not.equal(0);
    expect(res.stderr).to.contain(`spec.${field}: Invalid value`);
    expect(res.stderr).to.contain(`spec.${field} is immutable`);
    expect(await specOf(name), 'nothing changed').to.deep.equal(before);
  }

  it('refuses a change of siteId or prompt, naming the field', async () => {
    const name = await create({ siteId: 'site-a', prompt: 'Edit the page' });
    await expectRefused(name, { siteId: 'site-b' }, 'siteId');
    await expectRefused(name, { prompt: 'Edit another page' }, 'prompt');
  });

  it('refuses setting, changing or removing model and baseVersion', async () => {
    const unset = await create({ siteId: 'site-a', prompt: 'x' });
    await expectRefused(unset, { model: 'gpt-5.5' }, 'model');
    await expectRefused(unset, { baseVersion: SHA_A }, 'baseVersion');
    const set = await create({ siteId: 'site-a', prompt: 'x', model: 'gpt-5.5', baseVersion: SHA_A });
    await expectRefused(set, { model: 'gpt-5.4' }, 'model');
    await expectRefused(set, { model: null }, 'model');
    await expectRefused(set, { baseVersion: SHA_B }, 'baseVersion');
    await expectRefused(set, { baseVersion: null }, 'baseVersion');
  });

  it('refuses setting, changing (one limit, or a limit added) or removing the budget', async () => {
    const unset = await create({ siteId: 'site-a', prompt: 'x' });
    await expectRefused(unset, { budget: { maxRequests: 10 } }, 'budget');
    const set = await create({ siteId: 'site-a', prompt: 'x', budget: { maxRequests: 10 } });
    await expectRefused(set, { budget: { maxRequests: 20 } }, 'budget');
    await expectRefused(set, { budget: { maxOutputTokens: 1000 } }, 'budget');
    await expectRefused(set, { budget: null }, 'budget');
  });

  it('refuses a change of timeoutSeconds, also by removing a non-default value', async () => {
    const name = await create({ siteId: 'site-a', prompt: 'x', timeoutSeconds: 600 });
    await expectRefused(name, { timeoutSeconds: 900 }, 'timeoutSeconds');
    await expectRefused(name, { timeoutSeconds: null }, 'timeoutSeconds'); // the default, 1800, would apply
  });

  it('takes edits of retries, priority, publish, cancel and ttlSecondsAfterFinished', async () => {
    const name = await create({ siteId: 'site-a', prompt: 'x', model: 'gpt-5.5', budget: { maxRequests: 10 } });
    const edits: Array<Record<string, unknown>> = [
      { retries: 5 },
      { priority: 100 },
      { publish: true },
      { ttlSecondsAfterFinished: 3600 },
      { ttlSecondsAfterFinished: 60 },
      { cancel: true },
    ];
    for (const edit of edits) {
      const res = await patch(name, edit);
      expect(res.code, `${JSON.stringify(edit)}: ${res.stderr}`).to.equal(0);
      expect(await specOf(name)).to.include(edit);
    }
    const removed = await patch(name, { ttlSecondsAfterFinished: null });
    expect(removed.code, removed.stderr).to.equal(0);
    expect(await specOf(name)).to.not.have.property('ttlSecondsAfterFinished');
  });

  it('takes a patch that restates the immutable fields unchanged, metadata edits and status writes', async () => {
    const spec = { siteId: 'site-a', prompt: 'x', model: 'gpt-5.5', baseVersion: SHA_A, budget: { maxRequests: 10 }, timeoutSeconds: 600 };
    const name = await create(spec);
    const same = await patch(name, spec);
    expect(same.code, same.stderr).to.equal(0);
    const label = await cp.kubectl(['-n', ns, 'label', 'pwj', name, 'team=web'], { allowFailure: true });
    expect(label.code, label.stderr).to.equal(0);
    const status = await cp.kubectl(
      ['-n', ns, 'patch', 'pwj', name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Queued' } })],
      { allowFailure: true },
    );
    expect(status.code, status.stderr).to.equal(0);
    expect(await specOf(name)).to.deep.include(spec);
  });
});
