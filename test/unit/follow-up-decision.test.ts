/** manager/follow-up.ts and cli/followup.ts: whether a job can follow another, pure. */
import { expect } from 'chai';
import { followUpJob } from '../../cli/followup.js';
import { JobSpec, PagewrightJob, type JobStatus } from '../../common/job-resource.js';
import { followUpDecision, publishBases } from '../../manager/follow-up.js';

const V = (c: string) => c.repeat(64);
const THREAD = '01a237ba-f138-71e2-ad01-4742ce07a21c';

function job(name: string, spec: Record<string, unknown> = {}, status: JobStatus = {}, deleting = false): PagewrightJob {
  return PagewrightJob.parse({
    metadata: {
      name,
      namespace: 'ns',
      uid: `uid-${name}`,
      resourceVersion: '1',
      ...(deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    spec: { siteId: 'bakery', prompt: 'edit', ...spec },
    status,
  });
}
const done = (extra: JobStatus = {}) => ({
  phase: 'Succeeded' as const,
  baseVersion: V('a'),
  outputVersion: V('b'),
  threadId: THREAD,
  ...extra,
});

describe('follow-ups: the decision before the first attempt', () => {
  const follow = (spec: Record<string, unknown> = {}, status: JobStatus = {}) => job('second', { followUpOf: 'first', ...spec }, status);

  it('is none for a job that follows nothing, and ready with the source for one that does', () => {
    expect(followUpDecision(job('plain'), undefined, 'gpt-5.5')).to.deep.equal({ state: 'none' });
    expect(followUpDecision(follow(), job('first', {}, done()), 'gpt-5.5')).to.deep.equal({
      state: 'ready',
      source: { job: 'first', jobId: 'uid-first', version: V('b'), threadId: THREAD, lineage: [V('a')] },
    });
  });

  it('keeps the source its first attempt fixed, even once the job it follows is gone', () => {
    const fixed = { job: 'first', jobId: 'uid-first', version: V('b'), threadId: THREAD, lineage: [V('a')] };
    expect(followUpDecision(follow({}, { followUp: fixed }), undefined, 'gpt-5.5')).to.deep.equal({ state: 'ready', source: fixed });
  });

  it('chains the lineage of a follow-up of a follow-up, newest first, at most 32 versions', () => {
    const long = Array.from({ length: 40 }, (_, i) => i.toString(16).padStart(64, '0'));
    const source = job(
      'first',
      {},
      done({ followUp: { job: 'zero', jobId: 'uid-zero', version: V('a'), threadId: THREAD, lineage: long } }),
    );
    const d = followUpDecision(follow(), source, 'gpt-5.5');
    expect(d.state).to.equal('ready');
    if (d.state !== 'ready') return;
    expect(d.source.lineage).to.have.length(32);
    expect(d.source.lineage.slice(0, 2)).to.deep.equal([V('a'), long[0]]);
  });

  it('waits while the job it follows has not ended', () => {
    for (const phase of [undefined, 'Queued', 'Scheduled', 'Running'] as const) {
      const d = followUpDecision(follow(), job('first', {}, phase ? { phase } : {}), 'gpt-5.5');
      expect(d, String(phase)).to.deep.equal({ state: 'wait', message: 'waiting for job first, which this job follows, to finish' });
    }
  });

  const refusals: Array<[string, PagewrightJob, PagewrightJob | undefined, RegExp]> = [
    ['with a baseVersion', follow({ baseVersion: V('c') }), job('first', {}, done()), /exclude each other/],
    ['itself', job('first', { followUpOf: 'first' }), job('first', {}, done()), /cannot follow itself/],
    ['a job that does not exist', follow(), undefined, /no PagewrightJob first in namespace ns/],
    ['a job being deleted', follow(), job('first', {}, done(), true), /no PagewrightJob first/],
    ['a job of another site', follow(), job('first', { siteId: 'other' }, done()), /edited site other, not bakery/],
    ['a job of another model', follow({ model: 'gpt-6' }), job('first', {}, done()), /ran model gpt-5\.5: .*same model/],
    ['a job of another model (its own)', follow(), job('first', { model: 'gpt-6' }, done()), /ran model gpt-6/],
    ['a Failed job', follow(), job('first', {}, { phase: 'Failed', reason: 'CodexFailed' }), /ended Failed \(CodexFailed\)/],
    ['a Cancelled job', follow(), job('first', {}, { phase: 'Cancelled' }), /ended Cancelled/],
    ['a Succeeded job without an output', follow(), job('first', {}, done({ outputVersion: undefined })), /only a Succeeded job's output/],
    ['a job that kept no session', follow(), job('first', {}, done({ threadId: undefined })), /kept no codex session/],
  ];
  for (const [what, j, source, message] of refusals)
    it(`refuses to follow ${what}`, () => {
      const d = followUpDecision(j, source, 'gpt-5.5');
      expect(d.state).to.equal('refused');
      expect(d.state === 'refused' && d.message).to.match(message);
    });

  it('lets a publish replace the version it edited, or any of its chain, once each, newest first', () => {
    const fu = { job: 'first', jobId: 'uid-first', version: V('b'), threadId: THREAD, lineage: [V('a'), V('b'), V('c')] };
    expect(publishBases(job('x', {}, { baseVersion: V('b'), followUp: fu }))).to.deep.equal([V('b'), V('a'), V('c')]);
    expect(publishBases(job('y', {}, { baseVersion: V('d') }))).to.deep.equal([V('d')]);
    expect(publishBases(job('z'))).to.deep.equal([]);
  });
});

describe('pagewright followup: the job it creates', () => {
  it("takes the job's site, model, timeout and budget, and follows it", () => {
    const source = job('bakery-holiday-hours', { model: 'gpt-5.5', timeoutSeconds: 600, budget: { maxRequests: 5 } });
    const made = followUpJob(source, 'Now make it blue', { publish: true }) as { metadata: Record<string, string>; spec: unknown };
    expect(made.metadata).to.deep.equal({ generateName: 'bakery-holiday-hours-followup-' });
    expect(made.spec).to.deep.equal({
      siteId: 'bakery',
      prompt: 'Now make it blue',
      followUpOf: 'bakery-holiday-hours',
      model: 'gpt-5.5',
      timeoutSeconds: 600,
      budget: { maxRequests: 5 },
      publish: true,
    });
    expect(JobSpec.safeParse(made.spec).success).to.equal(true);
  });

  it('leaves out what the job left out, and takes a given name; a generated one fits a name', () => {
    const made = followUpJob(job('first'), 'again', { name: 'second', publish: false }) as {
      metadata: unknown;
      spec: Record<string, unknown>;
    };
    expect(made.metadata).to.deep.equal({ name: 'second' });
    expect(made.spec).to.not.have.any.keys('model', 'budget', 'publish');
    const long = followUpJob(job(`${'a'.repeat(47)}-${'b'.repeat(30)}`), 'p', { publish: false }) as { metadata: { generateName: string } };
    expect(long.metadata.generateName).to.equal(`${'a'.repeat(47)}-followup-`);
  });
});
