/**
 * The webhook dispatcher (manager/webhooks/dispatcher.ts) with the real sender against a real
 * HTTPS receiver: retries with backoff and the same webhook-id, Retry-After, 410 Gone, giving
 * up, order and one delivery in flight per site, and at-least-once across a manager restart.
 *
 * The Kubernetes side is a stand-in: a site's snapshot held in memory, and a status writer that
 * stores into it and offers the site again, as the informer event of a status write makes the
 * controller do. What the dispatcher decides from is exactly what the controller will give it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { silentLogger } from '../../common/logger.js';
import { WebhookSender } from '../../manager/webhooks/delivery.js';
import { type SigningKeySource, WebhookDispatcher, type WebhookStatusWriter } from '../../manager/webhooks/dispatcher.js';
import type { SiteHistoryEntry, SiteRef } from '../../manager/webhooks/events.js';
import type { EndedJob, JobWebhookStatus, RetryPolicy, SiteSnapshot, SiteWebhookStatus } from '../../manager/webhooks/outbox.js';
import { parseSigningSecret } from '../../manager/webhooks/signature.js';
import { UrlPolicy } from '../../manager/webhooks/url-policy.js';
import { Pki } from '../support/pki.js';
import { waitFor } from '../support/processes.js';
import { type ReceivedRequest, WebhookReceiver, answer, hang, verifyStandardWebhook } from '../support/webhook-receiver.js';

const SECRET = `whsec_${Buffer.alloc(32, 0x33).toString('base64')}`;
const KEY = parseSigningSecret(SECRET);
const T0 = Date.now();
const iso = (ms: number) => new Date(ms).toISOString();
const v = (n: number) => n.toString(16).padStart(64, '0');

function entry(sequence: number, action: SiteHistoryEntry['action'] = 'published', atMs = T0 + sequence * 1000): SiteHistoryEntry {
  return {
    sequence,
    action,
    version: v(sequence),
    time: iso(atMs),
    ...(action === 'published' ? { job: `job-${sequence}` } : { user: 'alice' }),
  };
}

function endedJob(site: SiteRef, name: string, atMs: number): EndedJob {
  return {
    namespace: site.namespace,
    name,
    uid: `uid-${name}`,
    attempt: 1,
    phase: 'Succeeded',
    completionTime: iso(atMs),
    outputVersion: v(90),
  };
}

/** One site's Kubernetes state, and a writer that stores into it and re-offers it (the informer's round trip). */
class FakeSite {
  snap: SiteSnapshot;
  readonly writes: Array<{ site?: SiteWebhookStatus | null; job?: { name: string; status: JobWebhookStatus } }> = [];
  writeAttempts = 0;
  failWrites = false;
  reoffer: ((s: SiteSnapshot) => void) | undefined;

  constructor(name: string, url: string, history: SiteHistoryEntry[] = [], jobs: EndedJob[] = []) {
    const site = { namespace: 'web', name, uid: `uid-site-${name}` };
    // the webhook is configured since before T0, so the state's own events are all owed
    this.snap = {
      site,
      webhook: { url, secretRef: { name: 'hook', key: 'secret' } },
      history,
      jobs,
      status: { since: iso(T0 - 60_000), deliveredThrough: 0 },
    };
  }

  readonly writer: WebhookStatusWriter = {
    writeSite: async (_site, status) => {
      this.#attempt();
      const { status: _old, ...rest } = this.snap;
      this.snap = { ...rest, ...(status ? { status } : {}) };
      this.writes.push({ site: status });
      this.#round();
    },
    writeJob: async (job, status) => {
      this.#attempt();
      this.snap = { ...this.snap, jobs: this.snap.jobs.map((j) => (j.uid === job.uid ? { ...j, webhook: status } : j)) };
      this.writes.push({ job: { name: job.name, status } });
      this.#round();
    },
  };

  #attempt() {
    this.writeAttempts++;
    if (this.failWrites) throw new Error('the API server is unreachable');
  }

  #round() {
    const snap = this.snap;
    setImmediate(() => this.reoffer?.(snap));
  }
}

describe('webhook dispatcher (real HTTPS receiver)', function () {
  this.timeout(30_000);
  let dir: string;
  let ca: string;
  let receiver: WebhookReceiver;
  let url: string;
  const dispatchers: WebhookDispatcher[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pw-webhook-dispatch-'));
    const pki = await Pki.create(dir);
    ca = readFileSync(pki.caCert, 'utf8');
    const pair = await pki.server('receiver', 'receiver.test', { ips: ['127.0.0.1'], dns: ['receiver.test'] });
    receiver = await WebhookReceiver.https({ cert: readFileSync(pair.cert, 'utf8'), key: readFileSync(pair.key, 'utf8') }, '127.0.0.1');
    url = `https://receiver.test:${receiver.port}/hook`;
  });

  after(async () => {
    await receiver?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => receiver.reset());

  afterEach(async () => {
    await Promise.all(dispatchers.splice(0).map((d) => d.close()));
  });

  /** A dispatcher whose writer stores into these sites (by name; a job into the site that has it). */
  function dispatcher(sites: FakeSite | FakeSite[], retry: Partial<RetryPolicy> = {}, connect = true): WebhookDispatcher {
    const all = Array.isArray(sites) ? sites : [sites];
    const writer: WebhookStatusWriter = {
      writeSite: (s, status) => all.find((f) => f.snap.site.name === s.name)!.writer.writeSite(s, status),
      writeJob: (j, status) => all.find((f) => f.snap.jobs.some((x) => x.uid === j.uid))!.writer.writeJob(j, status),
    };
    const sender = new WebhookSender({
      policy: new UrlPolicy({ allowHttp: false, allowedCidrs: ['127.0.0.0/8'] }),
      timeoutMs: 5000,
      extraCa: [ca],
      resolve: async (host) => (host === 'receiver.test' ? [{ address: '127.0.0.1', family: 4 }] : []),
    });
    // the Secret's key, as the manager reads it (signingKeyFromSecret on the site's Secret)
    const signingKey: SigningKeySource = async (namespace, ref) => {
      expect([namespace, ref]).to.deep.equal(['web', { name: 'hook', key: 'secret' }]);
      return KEY;
    };
    const d = new WebhookDispatcher({
      sender,
      writer,
      signingKey,
      retry: { maxAttempts: 10, baseBackoffMs: 100, random: () => 0.999, ...retry },
      logger: silentLogger,
    });
    if (connect) for (const site of all) site.reoffer = (s) => d.offer(s);
    dispatchers.push(d);
    return d;
  }

  const ids = (rs: ReceivedRequest[]) => rs.map((r) => r.headers['webhook-id']);

  it('retries a 500 with growing backoff, the same webhook-id and body each time, then records the delivery', async () => {
    const site = new FakeSite('bakery', url, [entry(1)]);
    receiver.script([answer(500), answer(500)]);
    dispatcher(site, { baseBackoffMs: 150 }).offer(site.snap);
    await waitFor('the delivery to be recorded', async () => site.snap.status?.lastDelivered);
    const got = receiver.received;
    expect(got).to.have.length(3);
    expect(new Set(ids(got))).to.deep.equal(new Set([`pws_uid-site-bakery_1`]));
    expect(new Set(got.map((r) => r.body)).size).to.equal(1);
    expect(got.every((r) => verifyStandardWebhook(SECRET, r.headers, r.body))).to.equal(true);
    const gap1 = got[1]!.at - got[0]!.at;
    const gap2 = got[2]!.at - got[1]!.at;
    expect(gap1).to.be.at.least(140); // 150 ms * 2^0, jitter at its top
    expect(gap2).to.be.at.least(290); // 150 ms * 2^1
    expect(gap2).to.be.greaterThan(gap1);
    // each failure was written before the retry, so a restart would resume the count
    expect(site.writes.map((w) => w.site?.retrying?.attempts ?? (w.site?.lastDelivered ? 'delivered' : undefined))).to.deep.equal([
      1,
      2,
      'delivered',
    ]);
    expect(site.snap.status).to.deep.include({ deliveredThrough: 1 });
    expect(site.snap.status).to.not.have.property('retrying');
  });

  it('waits out a Retry-After longer than its backoff', async () => {
    const site = new FakeSite('bakery', url, [entry(1)]);
    receiver.script([answer(503, { 'retry-after': '1' })]);
    dispatcher(site, { baseBackoffMs: 10 }).offer(site.snap);
    const got = await receiver.waitForRequests(2);
    expect(got[1]!.at - got[0]!.at).to.be.at.least(990);
    await waitFor('the delivery to be recorded', async () => site.snap.status?.lastDelivered);
  });

  it('stops at 410 Gone: no retry, and nothing more to that URL', async () => {
    const site = new FakeSite('bakery', url, [entry(1)]);
    receiver.script([answer(410)]);
    const d = dispatcher(site);
    d.offer(site.snap);
    await waitFor('410 to be recorded', async () => site.snap.status?.gone);
    expect(site.snap.status?.lastError).to.deep.include({ code: 'Gone' });
    site.snap = { ...site.snap, history: [...site.snap.history, entry(2)], jobs: [endedJob(site.snap.site, 'later', T0 + 5000)] };
    d.offer(site.snap);
    await d.idle();
    expect(receiver.received).to.have.length(1);
  });

  it('gives an event up after maxAttempts, records why, and delivers the next one', async () => {
    const site = new FakeSite('bakery', url, [entry(1), entry(2)]);
    receiver.script([answer(500), answer(502), answer(500)]);
    dispatcher(site, { maxAttempts: 3, baseBackoffMs: 20 }).offer(site.snap);
    await waitFor('the second event to be delivered', async () => site.snap.status?.deliveredThrough === 2);
    expect(ids(receiver.received)).to.deep.equal([
      'pws_uid-site-bakery_1',
      'pws_uid-site-bakery_1',
      'pws_uid-site-bakery_1',
      'pws_uid-site-bakery_2',
    ]);
    expect(site.snap.status?.lastError).to.deep.include({
      id: 'pws_uid-site-bakery_1',
      code: 'ServerError',
      message: 'gave up after 3 attempts: HTTP 500',
    });
    expect(site.snap.status?.lastDelivered?.id).to.equal('pws_uid-site-bakery_2');
  });

  it('sends site and job events in order, one at a time per site, sites in parallel; job deliveries are marked on the job', async () => {
    const a = new FakeSite('a', url, [entry(1, 'pushed', T0), entry(2, 'published', T0 + 2000)]);
    a.snap = { ...a.snap, jobs: [endedJob(a.snap.site, 'edit', T0 + 1000)] };
    const b = new FakeSite('b', url, [entry(1, 'pushed', T0)]);
    const inFlight = new Map<string, number>();
    const most = new Map<string, number>();
    let overall = 0;
    let mostOverall = 0;
    const slow = (req: ReceivedRequest, res: import('node:http').ServerResponse) => {
      const subject = JSON.parse(req.body).subject as string;
      inFlight.set(subject, (inFlight.get(subject) ?? 0) + 1);
      most.set(subject, Math.max(most.get(subject) ?? 0, inFlight.get(subject)!));
      mostOverall = Math.max(mostOverall, ++overall);
      setTimeout(() => {
        inFlight.set(subject, inFlight.get(subject)! - 1);
        overall--;
        res.writeHead(204).end();
      }, 200);
    };
    receiver.script([], slow);
    // one dispatcher for both sites, as in the manager
    const d = dispatcher([a, b]);
    d.offer(a.snap);
    d.offer(b.snap);
    await waitFor('all four events', async () => a.snap.status?.deliveredThrough === 2 && b.snap.status?.deliveredThrough === 1);
    const ofA = receiver.received.filter((r) => JSON.parse(r.body).subject === 'a').map((r) => JSON.parse(r.body).type);
    expect(ofA).to.deep.equal(['dev.pagewright.site.pushed', 'dev.pagewright.job.succeeded', 'dev.pagewright.site.published']);
    expect(most.get('a')).to.equal(1);
    expect(most.get('b')).to.equal(1);
    expect(mostOverall).to.equal(2);
    expect(a.snap.jobs[0]?.webhook).to.deep.include({ id: 'pwj_uid-edit_1_succeeded', state: 'Delivered', attempts: 1 });
    expect(receiver.received).to.have.length(4);
  });

  it('does not send again while the cache has not caught up with its own writes', async () => {
    const site = new FakeSite('bakery', url, [entry(1)], []);
    const stale = site.snap;
    site.snap = { ...site.snap, jobs: [endedJob(stale.site, 'edit', T0 + 2000)] };
    const cached = site.snap;
    const d = dispatcher(site, {}, false); // writes are stored, but the test offers what it likes
    d.offer(cached);
    await waitFor('both events', async () => receiver.received.length === 2 && site.writes.length === 2);
    await d.idle();
    for (let i = 0; i < 3; i++) {
      d.offer(cached); // the informer has not shown the writes yet
      await d.idle();
    }
    expect(receiver.received).to.have.length(2);
    d.offer(site.snap); // now it has
    await d.idle();
    expect(receiver.received).to.have.length(2);
  });

  it('is at-least-once across a restart: a delivery whose record was lost goes out again, same id and body', async () => {
    const site = new FakeSite('bakery', url, [entry(1)]);
    site.failWrites = true;
    const first = dispatcher(site, {}, false);
    first.offer(site.snap);
    await receiver.waitForRequests(1);
    // the write fails and is retried, without sending again
    await waitFor('two failed writes', async () => site.writeAttempts >= 2, 10_000);
    expect(receiver.received).to.have.length(1);
    await first.close(); // the manager stops before it could record the delivery
    expect(site.snap.status).to.deep.equal({ since: iso(T0 - 60_000), deliveredThrough: 0 });

    site.failWrites = false;
    dispatcher(site).offer(site.snap); // the next leader, from the same state
    await waitFor('the delivery to be recorded', async () => site.snap.status?.deliveredThrough === 1);
    const [a, b] = receiver.received;
    expect(receiver.received).to.have.length(2);
    expect(b!.headers['webhook-id']).to.equal(a!.headers['webhook-id']);
    expect(b!.body).to.equal(a!.body);
    expect(verifyStandardWebhook(SECRET, b!.headers, b!.body)).to.equal(true);
  });

  it('close() abandons an attempt in flight without recording it', async () => {
    const site = new FakeSite('bakery', url, [entry(1)]);
    receiver.script([hang]);
    const d = dispatcher(site);
    d.offer(site.snap);
    await receiver.waitForRequests(1);
    const started = Date.now();
    await d.close();
    expect(Date.now() - started).to.be.lessThan(1000);
    expect(d.state).to.equal('closed');
    expect(site.writes).to.deep.equal([]);
  });
});
