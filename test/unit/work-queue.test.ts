import { expect } from 'chai';
import { WorkQueue } from '../../manager/work-queue.js';

describe('WorkQueue', () => {
  it('hands out each key once however often it is added', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).to.equal(2);
    expect(await q.get()).to.equal('a');
    expect(await q.get()).to.equal('b');
    expect(q.length).to.equal(0);
  });

  it('never gives a key to two workers; an add during processing queues it again after done()', async () => {
    const q = new WorkQueue();
    q.add('a');
    const key = await q.get();
    q.add('a'); // changed while being processed
    expect(q.length).to.equal(0);
    let second: string | undefined;
    void q.get().then((k) => (second = k));
    await new Promise((r) => setImmediate(r));
    expect(second).to.equal(undefined);
    q.done(key!);
    await new Promise((r) => setImmediate(r));
    expect(second).to.equal('a');
  });

  it('wakes a waiting worker when a key arrives', async () => {
    const q = new WorkQueue();
    const next = q.get();
    q.add('x');
    expect(await next).to.equal('x');
  });

  it('backs off per key exponentially and forget() resets it', () => {
    const q = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 50, burst: 1000 });
    expect([q.addRateLimited('k'), q.addRateLimited('k'), q.addRateLimited('k'), q.addRateLimited('k')]).to.deep.equal([10, 20, 40, 50]);
    expect(q.addRateLimited('other')).to.equal(10);
    q.forget('k');
    expect(q.addRateLimited('k')).to.equal(10);
    void q.shutDown();
  });

  it('limits the overall retry rate with a token bucket', () => {
    let now = 0;
    const q = new WorkQueue({ baseDelayMs: 1, ratePerSecond: 10, burst: 2, now: () => now });
    expect(q.addRateLimited('a')).to.equal(1);
    expect(q.addRateLimited('b')).to.equal(1);
    expect(q.addRateLimited('c')).to.equal(100); // bucket empty: 1 token per 100 ms
    now = 1000;
    expect(q.addRateLimited('d')).to.equal(1);
    void q.shutDown();
  });

  it('addAfter keeps the earliest pending time', async () => {
    const q = new WorkQueue();
    q.addAfter('k', 10_000);
    q.addAfter('k', 5);
    const start = Date.now();
    expect(await q.get()).to.equal('k');
    expect(Date.now() - start).to.be.below(1000);
    q.done('k');
    await q.shutDown();
  });

  it('addAfter a delay longer than a Node timer holds (a TTL of a year) does not add the key at once', async () => {
    const q = new WorkQueue();
    q.addAfter('a-year', 365 * 24 * 3600 * 1000); // Node runs a timer past 2^31 - 1 ms after 1 ms
    q.addAfter('soon', 50);
    expect(await q.get()).to.equal('soon');
    q.done('soon');
    expect(q.length, 'the year-long key is not queued').to.equal(0);
    await q.shutDown();
  });

  it('shutDown wakes idle workers with undefined and waits for keys in flight', async () => {
    const q = new WorkQueue();
    q.add('busy');
    const key = await q.get();
    const idle = q.get();
    let finished = false;
    const down = q.shutDown().then(() => (finished = true));
    expect(await idle).to.equal(undefined);
    await new Promise((r) => setTimeout(r, 10));
    expect(finished).to.equal(false);
    q.done(key!);
    await down;
    expect(finished).to.equal(true);
    q.add('late');
    expect(await q.get()).to.equal(undefined);
  });
});
