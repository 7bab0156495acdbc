import { expect } from 'chai';
import { DeadlineExceededError, HttpStatusError, isTransientError, withRetry } from '../../common/retry.js';

describe('withRetry', () => {
  it('retries transient failures with growing delays, then succeeds', async () => {
    const delays: number[] = [];
    let calls = 0;
    const result = await withRetry(
      async ({ attempt }) => {
        calls++;
        if (attempt < 4) throw new HttpStatusError(503, 'unavailable');
        return 'ok';
      },
      { retries: 5, minDelayMs: 5, maxDelayMs: 1000, onRetry: ({ delayMs }) => delays.push(delayMs) },
    );
    expect(result).to.equal('ok');
    expect(calls).to.equal(4);
    expect(delays).to.have.length(3);
    // exponential with jitter in [1, 2): attempt n waits 5 * 2^(n-1) * [1, 2)
    delays.forEach((d, i) => {
      expect(d).to.be.at.least(5 * 2 ** i);
      expect(d).to.be.below(5 * 2 ** (i + 1) + 1);
    });
  });

  it('does not retry a permanent failure', async () => {
    let calls = 0;
    const err = await withRetry(
      async () => {
        calls++;
        throw new HttpStatusError(404, 'missing');
      },
      { retries: 5, minDelayMs: 1 },
    ).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(HttpStatusError);
    expect(calls).to.equal(1);
  });

  it('gives up at the deadline and aborts the attempt in flight', async () => {
    const started = Date.now();
    let sawAbort = false;
    const err = await withRetry(
      ({ signal }) =>
        new Promise((_, reject) => {
          signal.addEventListener('abort', () => {
            sawAbort = true;
            reject(Object.assign(new Error('timed out'), { name: 'TimeoutError' }));
          });
        }),
      { retries: 100, minDelayMs: 1, deadline: Date.now() + 150 },
    ).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(Error);
    expect(sawAbort).to.equal(true);
    expect(Date.now() - started).to.be.below(2000);
  });

  it('refuses to start after the deadline', async () => {
    const err = await withRetry(async () => 1, { deadline: Date.now() - 1 }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(DeadlineExceededError);
  });

  it('classifies errors', () => {
    expect(isTransientError(new HttpStatusError(500, 'x'))).to.equal(true);
    expect(isTransientError(new HttpStatusError(429, 'x'))).to.equal(true);
    expect(isTransientError(new HttpStatusError(401, 'x'))).to.equal(false);
    expect(isTransientError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).to.equal(true);
    expect(isTransientError(new Error('wrapped', { cause: Object.assign(new Error('x'), { code: 'ECONNRESET' }) }))).to.equal(true);
    expect(isTransientError(new Error('bug'))).to.equal(false);
  });
});
