/**
 * What a site's publish targets are owed (manager/sites/export-plan.ts), decided without a
 * network: a new target starts with the site as it is, each change goes once and in order, a
 * failed try waits its backoff, a changed target starts afresh, and a branch tip that already is
 * a change is recognised (the retry after a lost push answer).
 */
import { expect } from 'chai';
import type { SiteTarget } from '../../common/site-resource.js';
import { commitMessage, exported, failedTry, planTarget, targetSpecHash, tipHasChange } from '../../manager/sites/export-plan.js';

const target: SiteTarget = { name: 'pages', git: { url: 'https://git.example.com/x.git', branch: 'main' } };
const entry = (sequence: number, action = 'published') => ({
  sequence,
  action,
  version: String(sequence).repeat(64).slice(0, 64),
  time: '2026-12-02T00:00:00Z',
  job: `job-${sequence}`,
});
const history = [entry(1, 'pushed'), entry(2), entry(3, 'rolledback')];
const NOW = Date.parse('2026-12-02T12:00:00Z');

describe('export plan: what each publish target is owed', () => {
  it('starts a new target with the newest change, not the whole history; nothing for a site without versions', () => {
    const start = planTarget(target, undefined, history, NOW);
    expect(start).to.deep.equal({ kind: 'start', status: { name: 'pages', specHash: targetSpecHash(target), exportedThrough: 2 } });
    if (start.kind !== 'start') throw new Error('unreachable');
    expect(planTarget(target, start.status, history, NOW)).to.deep.include({ kind: 'export', entry: history[2], missed: 0 });
    expect(planTarget(target, undefined, [], NOW)).to.deep.equal({ kind: 'idle' });
  });

  it('owes each change once, oldest first, and is idle when caught up', () => {
    let status = { name: 'pages', specHash: targetSpecHash(target), exportedThrough: 0 };
    const order: number[] = [];
    for (;;) {
      const plan = planTarget(target, status, history, NOW);
      if (plan.kind !== 'export') break;
      order.push(plan.entry.sequence);
      status = exported(status, plan.entry, '2026-12-02T12:00:00Z', `c${plan.entry.sequence}`) as typeof status;
    }
    expect(order).to.deep.equal([1, 2, 3]);
    expect(status).to.deep.include({ exportedThrough: 3, version: history[2]!.version, commit: 'c3' });
  });

  it('counts changes that left the listed history before they were exported', () => {
    const plan = planTarget(target, { name: 'pages', specHash: targetSpecHash(target), exportedThrough: 0 }, history.slice(2), NOW);
    expect(plan).to.deep.include({ kind: 'export', missed: 2 });
  });

  it('waits out the backoff of a failed try, then tries the same change again; success clears the error', () => {
    const status = { name: 'pages', specHash: targetSpecHash(target), exportedThrough: 1 };
    const failed = failedTry(status, history[1]!, { code: 'PublishConflict', message: 'moved' }, NOW, {
      baseBackoffMs: 10_000,
      random: () => 0,
    });
    expect(failed).to.deep.include({ attempts: 1, nextAttemptTime: new Date(NOW + 5_000).toISOString() });
    expect(failed.lastError).to.deep.include({ code: 'PublishConflict', sequence: 2 });
    expect(planTarget(target, failed, history, NOW + 1000)).to.deep.equal({ kind: 'wait', untilMs: NOW + 5_000 });
    expect(planTarget(target, failed, history, NOW + 5_000)).to.deep.include({ kind: 'export', entry: history[1] });
    const twice = failedTry(failed, history[1]!, { code: 'TargetUnavailable', message: 'x' }, NOW, {
      baseBackoffMs: 10_000,
      random: () => 0,
    });
    expect(twice.attempts).to.equal(2);
    // backoff is capped (10 minutes by default), however many tries
    let many = failed;
    for (let i = 0; i < 30; i++)
      many = failedTry(many, history[1]!, { code: 'X', message: 'x' }, NOW, { baseBackoffMs: 10_000, random: () => 0.99 });
    expect(Date.parse(many.nextAttemptTime!) - NOW).to.be.at.most(600_000);
    const done = exported(many, history[1]!, 'now');
    expect(done).to.not.have.any.keys('attempts', 'nextAttemptTime', 'lastError');
  });

  it('starts afresh when the target names another place (its settings changed), not when only the name is the same', () => {
    const status = { name: 'pages', specHash: targetSpecHash(target), exportedThrough: 3 };
    expect(planTarget(target, status, history, NOW)).to.deep.equal({ kind: 'idle' });
    const moved: SiteTarget = { ...target, git: { ...target.git!, url: 'https://git.example.com/other.git' } };
    expect(planTarget(moved, status, history, NOW)).to.deep.include({ kind: 'start' });
  });

  it('writes the change into the commit message and recognises a tip that already is it (or a later one) of this site only', () => {
    const site = { namespace: 'shop', name: 'bakery', uid: 'u-1' };
    const message = commitMessage(site, entry(7, 'rolledback'));
    expect(message.split('\n')[0]).to.equal(`Pagewright: roll back to ${'7'.repeat(12)} (job job-7)`);
    expect(tipHasChange(message, { uid: 'u-1' }, 7)).to.equal(true);
    expect(tipHasChange(message, { uid: 'u-1' }, 6)).to.equal(true);
    expect(tipHasChange(message, { uid: 'u-1' }, 8)).to.equal(false);
    expect(tipHasChange(message, { uid: 'u-2' }, 7), 'another site of the same name (recreated)').to.equal(false);
    expect(tipHasChange('hand-made commit\n\nPagewright-Sequence: 99\n', { uid: 'u-1' }, 7)).to.equal(false);
  });
});
