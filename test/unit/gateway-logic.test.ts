/**
 * The gateway's decisions, without a network: which attempts are live, the budget, the shared
 * backoff, the usage read out of a streamed answer, and the manager's model policy.
 */
import { expect } from 'chai';
import { PagewrightJob } from '../../common/job-resource.js';
import { attemptVerdict } from '../../gateway/attempts.js';
import { SharedBackoff, parseRetryAfter } from '../../gateway/backoff.js';
import { UsageLedger, budgetExceeded } from '../../gateway/ledger.js';
import { UsageTap } from '../../gateway/usage-tap.js';
import { modelPolicy } from '../../manager/model-policy.js';
import { defaultPodConfig } from '../support/pod-config.js';

const job = (status: Record<string, unknown>, spec: Record<string, unknown> = {}, meta: Record<string, unknown> = {}) =>
  PagewrightJob.parse({
    metadata: { name: 'j', namespace: 'ns', uid: 'u-1', resourceVersion: '1', ...meta },
    spec: { siteId: 's', prompt: 'p', ...spec },
    status,
  });

describe('gateway: live attempts', () => {
  const claims = { attempt: 2, name: 'j' };
  it('lets the current attempt of a Scheduled or Running job call', () => {
    expect(attemptVerdict(job({ phase: 'Running', attempt: 2 }), claims)).to.deep.equal({ live: true });
    expect(attemptVerdict(job({ phase: 'Scheduled', attempt: 2 }), claims)).to.deep.equal({ live: true });
  });
  it('refuses every attempt that has ended, naming why', () => {
    const cases: Array<[ReturnType<typeof job> | undefined, RegExp]> = [
      [undefined, /no longer exists/],
      [job({ phase: 'Running', attempt: 3 }), /at attempt 3/],
      [job({ phase: 'Queued', attempt: 2 }), /is Queued/],
      [job({ phase: 'Succeeded', attempt: 2 }), /is Succeeded/],
      [job({ phase: 'Running', attempt: 2, reportedAttempt: 2 }), /reported the result/],
      [job({ phase: 'Running', attempt: 2 }, { cancel: true }), /cancelled/],
      [job({ phase: 'Running', attempt: 2 }, {}, { deletionTimestamp: '2026-01-01T00:00:00Z' }), /being deleted/],
    ];
    for (const [j, why] of cases) {
      const v = attemptVerdict(j, claims);
      expect(v.live).to.equal(false);
      expect((v as { message: string }).message)
        .to.match(/attempt 2 of job j has ended/)
        .and.to.match(why);
    }
  });
});

describe('gateway: budget and ledger', () => {
  const budget = { maxRequests: 2, maxInputTokens: 1000, maxOutputTokens: 100 };
  it('names the limit that is spent', () => {
    expect(budgetExceeded({ requests: 1, inputTokens: 10, outputTokens: 10 }, budget)).to.equal(null);
    expect(budgetExceeded({ requests: 2, inputTokens: 10, outputTokens: 10 }, budget)).to.match(/2 of its 2 model requests/);
    expect(budgetExceeded({ requests: 0, inputTokens: 1000, outputTokens: 10 }, budget)).to.match(/1000 of its 1000 input tokens/);
    expect(budgetExceeded({ requests: 0, inputTokens: 0, outputTokens: 150 }, budget)).to.match(/150 of its 100 output tokens/);
  });
  it('counts a request when it is let through, so a burst cannot all pass one check', () => {
    const ledger = new UsageLedger();
    const none = { requests: 0, inputTokens: 0, outputTokens: 0 };
    expect(ledger.admit('a', budget, none, 16).admitted).to.equal(true);
    expect(ledger.admit('a', budget, none, 16).admitted).to.equal(true);
    const third = ledger.admit('a', budget, none, 16);
    expect(third.admitted).to.equal(false);
    expect(third.usage.requests).to.equal(2);
    expect(ledger.admit('b', budget, none, 16).admitted, 'budgets are per job').to.equal(true);
  });
  it('starts from what the job status recorded (a restarted gateway) and never goes back', () => {
    const ledger = new UsageLedger();
    const first = ledger.admit('a', budget, { requests: 1, inputTokens: 0, outputTokens: 0 }, 50);
    expect(first.usage.requests).to.equal(2);
    if (!first.admitted) throw new Error('not admitted');
    ledger.settle(first.reservation, { inputTokens: 600, outputTokens: 5 }, 0);
    expect(ledger.admit('a', { ...budget, maxRequests: 10 }, { requests: 0, inputTokens: 0, outputTokens: 0 }, 16).usage).to.deep.equal({
      requests: 3,
      inputTokens: 600,
      outputTokens: 5,
    });
  });
  it('reserves each call its output tokens, so parallel calls cannot each spend the whole remainder', () => {
    const ledger = new UsageLedger();
    const none = { requests: 0, inputTokens: 0, outputTokens: 0 };
    const big = { maxRequests: 10, maxInputTokens: 10_000, maxOutputTokens: 100 };
    expect(ledger.outputTokensLeft('a', big, none)).to.equal(100);
    const first = ledger.admit('a', big, none, 70);
    expect(ledger.outputTokensLeft('a', big, none), 'the first call holds 70').to.equal(30);
    if (!first.admitted) throw new Error('not admitted');
    ledger.settle(first.reservation, { inputTokens: 10, outputTokens: 20 }, 0);
    expect(ledger.outputTokensLeft('a', big, none), 'settled at what it spent').to.equal(80);
    expect(ledger.outputTokensLeft('a', big, { ...none, outputTokens: 90 }), 'the status counts too').to.equal(10);
  });
  it('charges an answer that reported no usage its whole reservation and the input estimate', () => {
    const ledger = new UsageLedger();
    const none = { requests: 0, inputTokens: 0, outputTokens: 0 };
    const admitted = ledger.admit('a', { maxRequests: 10, maxInputTokens: 10_000, maxOutputTokens: 1000 }, none, 400);
    if (!admitted.admitted) throw new Error('not admitted');
    expect(ledger.settle(admitted.reservation, null, 123)).to.deep.equal({ requests: 1, inputTokens: 123, outputTokens: 400 });
  });
  it('forgets a job that ended, and a late answer of it changes nothing', () => {
    const ledger = new UsageLedger();
    const none = { requests: 0, inputTokens: 0, outputTokens: 0 };
    const admitted = ledger.admit('a', budget, none, 16);
    ledger.admit('b', budget, none, 16);
    expect(ledger.size).to.equal(2);
    ledger.forget('a');
    expect(ledger.size).to.equal(1);
    expect(ledger.usage('a')).to.deep.equal(none);
    if (!admitted.admitted) throw new Error('not admitted');
    expect(ledger.settle(admitted.reservation, { inputTokens: 5, outputTokens: 5 }, 0), 'nothing to report').to.equal(null);
    expect(ledger.size, 'a late answer does not bring it back').to.equal(1);
  });
});

describe('gateway: shared backoff', () => {
  it('honours Retry-After in seconds and as a date, else doubles from the base to the cap', () => {
    let now = 1_000_000;
    const b = new SharedBackoff(1000, 4000, () => now);
    expect(b.waitMs()).to.equal(0);
    expect(b.rateLimited('3')).to.equal(3000);
    expect(b.waitMs()).to.equal(3000);
    now += 1000;
    expect(b.waitMs(), 'one clock for every job').to.equal(2000);
    expect(b.rateLimited(undefined)).to.equal(2000); // second 429 in a row: base * 2
    expect(b.rateLimited(undefined)).to.equal(4000);
    expect(b.rateLimited(undefined), 'capped').to.equal(4000);
    b.succeeded();
    expect(b.rateLimited(undefined)).to.equal(1000);
    expect(parseRetryAfter(new Date(now + 5000).toUTCString(), now)).to.be.within(4000, 5000);
    expect(parseRetryAfter('soon', now)).to.equal(null);
  });
});

describe('gateway: usage from the answer', () => {
  async function tapped(chunks: string[], streamed: boolean): Promise<{ usage: unknown; out: string }> {
    const tap = new UsageTap(streamed);
    let out = '';
    for (const c of chunks) {
      tap.write(Buffer.from(c));
      out += c;
    }
    tap.end();
    return { usage: tap.usage, out };
  }
  it('reads response.completed usage from a stream split anywhere', async () => {
    const events = [
      'event: response.created\ndata: {"type":"response.created","response":{"id":"r"}}\n\n',
      'event: response.output_item.done\ndata: {"type":"response.output_item.done","item":{"type":"message","content":[{"type":"output_text","text":"the word \\"usage\\" in text"}]}}\n\n',
      'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r","usage":{"input_tokens":1234,"output_tokens":56}}}\n\n',
    ].join('');
    const pieces = [events.slice(0, 7), events.slice(7, 200), events.slice(200, events.length - 20), events.slice(events.length - 20)];
    const { usage, out } = await tapped(pieces, true);
    expect(usage).to.deep.equal({ inputTokens: 1234, outputTokens: 56 });
    expect(out).to.equal(events);
    // at every possible seam, in two and in three pieces
    for (let i = 1; i < events.length; i++) {
      const j = Math.min(events.length - 1, i + 9);
      expect((await tapped([events.slice(0, i), events.slice(i)], true)).usage, `split at ${i}`).to.deep.equal({
        inputTokens: 1234,
        outputTokens: 56,
      });
      expect((await tapped([events.slice(0, i), events.slice(i, j), events.slice(j)], true)).usage, `split at ${i}, ${j}`).to.deep.equal({
        inputTokens: 1234,
        outputTokens: 56,
      });
    }
  });
  it('reads a non-streamed answer, and reports nothing when there is no usage', async () => {
    expect((await tapped(['{"id":"r","usage":{"input_tokens":7,', '"output_tokens":8}}'], false)).usage).to.deep.equal({
      inputTokens: 7,
      outputTokens: 8,
    });
    expect((await tapped(['data: {"type":"response.completed","response":{}}\n\n'], true)).usage).to.equal(null);
  });
});

describe('manager: model policy at admission', () => {
  const cfg = defaultPodConfig() as unknown as Parameters<typeof modelPolicy>[1];
  it('allows the default model with the default budget', () => {
    const p = modelPolicy(job({}), { ...cfg, codexModel: 'gpt-5.5', modelAllowlist: undefined });
    expect(p).to.deep.include({ allowed: true, model: 'gpt-5.5' });
  });
  it('refuses a model outside the allowlist, naming the allowed ones', () => {
    const p = modelPolicy(job({}, { model: 'gpt-huge' }), { ...cfg, codexModel: 'gpt-5.5', modelAllowlist: ['gpt-5.5', 'gpt-mini'] });
    expect(p).to.deep.include({ allowed: false, reason: 'ModelNotAllowed' });
    expect((p as { message: string }).message).to.equal('spec.model "gpt-huge" is not allowed here; allowed: gpt-5.5, gpt-mini');
  });
  it('fills unset limits from the defaults, and refuses a budget over the caps', () => {
    const c = { ...cfg, budgetDefaultRequests: 50, budgetMaxRequests: 100, budgetMaxOutputTokens: 1000 };
    expect(modelPolicy(job({}, { budget: { maxOutputTokens: 10 } }), c)).to.deep.include({
      allowed: true,
      budget: { maxRequests: 50, maxInputTokens: c.budgetDefaultInputTokens, maxOutputTokens: 10 },
    });
    const over = modelPolicy(job({}, { budget: { maxRequests: 101, maxOutputTokens: 1001 } }), c);
    expect(over).to.deep.include({ allowed: false, reason: 'BudgetNotAllowed' });
    expect((over as { message: string }).message).to.match(/maxRequests 101 > 100, maxOutputTokens 1001 > 1000/);
  });
});
