/**
 * One webhook delivery attempt (manager/webhooks/delivery.ts) against real receivers: node:https
 * servers with certificates from the test CA, on this machine's loopback and on its main
 * non-loopback address. What arrives is parsed and validated with the cloudevents SDK and its
 * signature verified as the Standard Webhooks spec says a receiver does
 * (test/support/webhook-receiver.ts, not the manager's signer). Every refusal is checked on the
 * receiver's side too: it saw nothing.
 *
 * Host names are mapped to addresses through the sender's resolver seam (`receiver.test`), so
 * the tests also show that the connection goes to the vetted address only: nothing else could
 * resolve those names.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { type CloudEvent, HTTP } from 'cloudevents';
import type { LogFields, Logger } from '../../common/logger.js';
import { type ResolvedAddress, type Resolver, type SenderOptions, WebhookSender, systemResolver } from '../../manager/webhooks/delivery.js';
import { type SiteHistoryEntry, WebhookEventData, siteEvent } from '../../manager/webhooks/events.js';
import { parseSigningSecret } from '../../manager/webhooks/signature.js';
import { UrlPolicy } from '../../manager/webhooks/url-policy.js';
import { Pki } from '../support/pki.js';
import { WebhookReceiver, answer, hang, machineAddress, verifyStandardWebhook } from '../support/webhook-receiver.js';

const SECRET = `whsec_${Buffer.alloc(32, 0x5a).toString('base64')}`;
const KEY = parseSigningSecret(SECRET);
const SITE = { namespace: 'web', name: 'bakery', uid: '0f0e0d0c-aaaa-bbbb-cccc-000000000001' };
const ENTRY: SiteHistoryEntry = {
  sequence: 3,
  action: 'published',
  version: 'ab'.repeat(32),
  previousVersion: 'cd'.repeat(32),
  time: '2026-03-01T10:00:00.000Z',
  job: 'holiday-hours',
};
const EVENT = siteEvent(SITE, ENTRY);

interface LogLine {
  level: string;
  message: string;
  fields: LogFields;
}

function captureLogger(lines: LogLine[], base: LogFields = {}): Logger {
  const at =
    (level: string) =>
    (message: string, fields: LogFields = {}) =>
      lines.push({ level, message, fields: { ...base, ...fields } });
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (f) => captureLogger(lines, { ...base, ...f }),
  };
}

describe('webhook delivery (real HTTPS receivers)', function () {
  this.timeout(30_000);
  const machine = machineAddress();
  let dir: string;
  let ca: string;
  let receiver: WebhookReceiver;
  /** Where a followed redirect would land: loopback, on its own port. */
  let trap: WebhookReceiver;
  let logs: LogLine[];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pw-webhooks-'));
    const pki = await Pki.create(dir);
    ca = readFileSync(pki.caCert, 'utf8');
    const ips = ['127.0.0.1', '::1', ...(machine ? [machine] : [])];
    const pair = await pki.server('receiver', 'receiver.test', { ips, dns: ['receiver.test', 'localhost'] });
    const tls = { cert: readFileSync(pair.cert, 'utf8'), key: readFileSync(pair.key, 'utf8') };
    receiver = await WebhookReceiver.https(tls);
    trap = await WebhookReceiver.https(tls, '127.0.0.1');
  });

  after(async () => {
    await receiver?.close();
    await trap?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    receiver.reset();
    trap.reset();
    logs = [];
  });

  /** A resolver seam from a fixed table, counting its calls. */
  function table(map: Record<string, ResolvedAddress[] | ((call: number) => ResolvedAddress[])>): Resolver & { calls: string[] } {
    const calls: string[] = [];
    const resolve = async (host: string) => {
      calls.push(host);
      const entry = map[host];
      if (!entry) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return typeof entry === 'function' ? entry(calls.length) : entry;
    };
    return Object.assign(resolve, { calls });
  }
  const v4 = (address: string): ResolvedAddress => ({ address, family: 4 });

  function sender(allowedCidrs: string[], over: Partial<SenderOptions> = {}): WebhookSender {
    return new WebhookSender({
      policy: new UrlPolicy({ allowHttp: false, allowedCidrs }),
      timeoutMs: 5000,
      extraCa: [ca],
      resolve: table({}),
      logger: captureLogger(logs),
      ...over,
    });
  }
  const url = (host: string, path = '/hooks/pagewright') => `https://${host}:${receiver.port}${path}`;

  describe('delivers', () => {
    it('one signed CloudEvent to a host name, over TLS for that name, to the vetted address only (loopback allowed in config)', async () => {
      const resolve = table({ 'receiver.test': [v4('127.0.0.1')] });
      const outcome = await sender(['127.0.0.0/8'], { resolve }).send({ url: url('receiver.test'), event: EVENT, key: KEY });
      expect(outcome).to.deep.equal({ result: 'delivered', status: 204 });
      expect(receiver.received).to.have.length(1);
      const got = receiver.received[0]!;
      expect(resolve.calls).to.deep.equal(['receiver.test']);
      expect(got).to.deep.include({ method: 'POST', path: '/hooks/pagewright', servername: 'receiver.test', localAddress: '127.0.0.1' });
      expect(got.headers['content-type']).to.equal('application/cloudevents+json; charset=utf-8');
      expect(got.headers['user-agent']).to.equal('pagewright-webhooks');

      // the cloudevents SDK reads it as a valid CloudEvent 1.0, and its data is the documented schema
      const ce = HTTP.toEvent({ headers: got.headers, body: got.body }) as CloudEvent<unknown>;
      expect(ce.validate()).to.equal(true);
      expect(ce).to.deep.include({ specversion: '1.0', id: EVENT.id, type: 'dev.pagewright.site.published', subject: 'bakery' });
      expect(ce.source).to.equal('/namespaces/web/pagewrightsites/bakery');
      expect(WebhookEventData.parse(ce.data)).to.deep.equal(EVENT.data);

      // the Standard Webhooks headers: the idempotency id is the event's id, and the signature verifies
      expect(got.headers['webhook-id']).to.equal(EVENT.id);
      expect(Math.abs(Number(got.headers['webhook-timestamp']) - Date.now() / 1000)).to.be.lessThan(10);
      expect(verifyStandardWebhook(SECRET, got.headers, got.body)).to.equal(true);
      // and the verification is not vacuous: another key, a changed body or an old timestamp fail it
      expect(verifyStandardWebhook(`whsec_${Buffer.alloc(32, 1).toString('base64')}`, got.headers, got.body)).to.equal(false);
      expect(verifyStandardWebhook(SECRET, got.headers, got.body.replace('bakery', 'bakerz'))).to.equal(false);
      expect(verifyStandardWebhook(SECRET, got.headers, got.body, Date.now() / 1000 + 3600)).to.equal(false);
    });

    it("to this machine's non-loopback address, as a literal and by name, without any loopback allowance", async function () {
      if (!machine) this.skip();
      const allow = [`${machine}/32`];
      const literal = await sender(allow).send({ url: url(machine!), event: EVENT, key: KEY });
      expect(literal).to.deep.equal({ result: 'delivered', status: 204 });
      const named = await sender(allow, { resolve: table({ 'receiver.test': [v4(machine!)] }) }).send({
        url: url('receiver.test'),
        event: EVENT,
        key: KEY,
      });
      expect(named).to.deep.equal({ result: 'delivered', status: 204 });
      expect(receiver.received.map((r) => [r.localAddress, r.servername ?? null])).to.deep.equal([
        [machine, null], // no SNI for an IP literal: the certificate's IP SAN is checked
        [machine, 'receiver.test'],
      ]);
      expect(receiver.received.every((r) => verifyStandardWebhook(SECRET, r.headers, r.body))).to.equal(true);
    });

    it('over IPv6, to [::1] when ::1 is allowed', async () => {
      const outcome = await sender(['::1/128']).send({ url: url('[::1]'), event: EVENT, key: KEY });
      expect(outcome).to.deep.equal({ result: 'delivered', status: 204 });
      expect(receiver.received[0]?.localAddress).to.equal('::1');
    });

    it('when a 2xx answer is followed by a body that never ends', async () => {
      receiver.script([
        (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('accepted, and then nothing more');
        },
      ]);
      const started = Date.now();
      const outcome = await sender(['127.0.0.0/8'], { timeoutMs: 3000 }).send({ url: url('127.0.0.1'), event: EVENT, key: KEY });
      expect(outcome).to.deep.equal({ result: 'delivered', status: 200 });
      expect(Date.now() - started).to.be.lessThan(2000);
    });
  });

  describe('refuses loopback unless the config allows it, and the receiver sees nothing', () => {
    const cases: Array<[string, string, Resolver | undefined]> = [
      ['an IPv4 literal', 'https://127.0.0.1:PORT/', undefined],
      ['an IPv6 literal', 'https://[::1]:PORT/', undefined],
      ['an IPv4-mapped IPv6 literal', 'https://[::ffff:127.0.0.1]:PORT/', undefined],
      ['a name that resolves to it, at delivery time', 'https://receiver.test:PORT/', table({ 'receiver.test': [v4('127.0.0.1')] })],
      ['localhost through the system resolver (/etc/hosts)', 'https://localhost:PORT/', systemResolver],
    ];
    for (const [what, template, resolve] of cases) {
      it(what, async () => {
        const outcome = await sender([], resolve ? { resolve } : {}).send({
          url: template.replace('PORT', String(receiver.port)),
          event: EVENT,
          key: KEY,
        });
        expect(outcome).to.deep.include({ result: 'giveUp', code: 'AddressNotAllowed' });
        expect(outcome.result === 'giveUp' && outcome.message).to.match(/loopback/);
        expect(receiver.received).to.have.length(0);
      });
    }

    it('a name with one refused address among allowed ones', async function () {
      if (!machine) this.skip();
      const resolve = table({ 'receiver.test': [v4(machine!), v4('127.0.0.1')] });
      const outcome = await sender([`${machine}/32`], { resolve }).send({ url: url('receiver.test'), event: EVENT, key: KEY });
      expect(outcome).to.deep.include({ result: 'giveUp', code: 'AddressNotAllowed' });
      expect(receiver.received).to.have.length(0);
    });
  });

  it('resolves once: a name that re-binds to loopback after the check still reaches only the vetted address', async function () {
    if (!machine) this.skip();
    // first answer: this machine's address (allowed); every later one: loopback (refused)
    const resolve = table({ 'receiver.test': (call) => (call === 1 ? [v4(machine!)] : [v4('127.0.0.1')]) });
    const outcome = await sender([`${machine}/32`], { resolve }).send({ url: url('receiver.test'), event: EVENT, key: KEY });
    expect(outcome).to.deep.equal({ result: 'delivered', status: 204 });
    expect(resolve.calls).to.have.length(1);
    expect(receiver.received.map((r) => r.localAddress)).to.deep.equal([machine]);
  });

  describe('never follows a redirect', () => {
    for (const [status, to, where] of [
      [302, '127.0.0.1 (a receiver there)', () => `https://127.0.0.1:${trap.port}/stolen`],
      [307, 'the metadata service', () => 'http://169.254.169.254/latest/meta-data/iam/security-credentials/'],
      [308, 'IPv4-mapped loopback (a receiver there)', () => `https://[::ffff:127.0.0.1]:${trap.port}/`],
      [301, 'a relative path', () => '/elsewhere'],
    ] as const) {
      it(`a ${status} to ${to}: a failed delivery, logged with its Location`, async () => {
        const location = where();
        receiver.script([answer(status, { location })]);
        // loopback is allowed here, so only the rule against redirects keeps the trap empty
        const outcome = await sender(['127.0.0.0/8']).send({ url: url('127.0.0.1'), event: EVENT, key: KEY });
        expect(outcome).to.deep.include({ result: 'giveUp', code: 'Redirected', status, location });
        expect(receiver.received).to.have.length(1);
        expect(trap.received).to.have.length(0);
        const line = logs.find((l) => l.level === 'warn' && l.message === 'webhook delivery given up');
        expect(line?.fields).to.deep.include({ code: 'Redirected', location, webhook_id: EVENT.id });
      });
    }
  });

  describe("classifies the receiver's answers", () => {
    const cases: Array<[string, ReturnType<typeof answer>, Record<string, unknown>]> = [
      ['410 Gone: give up', answer(410), { result: 'giveUp', code: 'Gone', status: 410 }],
      [
        '404: give up',
        answer(404, {}, 'no such hook'),
        { result: 'giveUp', code: 'ClientError', status: 404, message: 'HTTP 404: no such hook' },
      ],
      ['401: give up', answer(401), { result: 'giveUp', code: 'ClientError', status: 401 }],
      ['408: retry', answer(408), { result: 'retry', code: 'RequestTimeout', status: 408 }],
      [
        '429 with Retry-After: retry then',
        answer(429, { 'retry-after': '7' }),
        { result: 'retry', code: 'RateLimited', retryAfterMs: 7000 },
      ],
      ['500: retry', answer(500, {}, 'x'.repeat(10_000)), { result: 'retry', code: 'ServerError', status: 500 }],
      [
        '503 with an HTTP-date Retry-After',
        // the date an hour from when it answers (the case list is built long before a full run reaches it)
        (req, res) => answer(503, { 'retry-after': new Date(Date.now() + 3_600_000).toUTCString() })(req, res),
        { result: 'retry', code: 'ServerError', status: 503 },
      ],
    ];
    for (const [what, responder, expected] of cases) {
      it(what, async () => {
        receiver.script([responder]);
        const outcome = await sender(['127.0.0.0/8']).send({ url: url('127.0.0.1'), event: EVENT, key: KEY });
        expect(outcome).to.deep.include(expected);
        expect(receiver.received).to.have.length(1);
        if (outcome.result !== 'delivered') expect(outcome.message.length).to.be.lessThan(300);
        if (what.startsWith('503')) expect(outcome.result === 'retry' && outcome.retryAfterMs).to.be.within(3_500_000, 3_600_000);
      });
    }
  });

  it('gives up on a slow receiver at the timeout, to retry later', async () => {
    receiver.script([hang]);
    const started = Date.now();
    const outcome = await sender(['127.0.0.0/8'], { timeoutMs: 500 }).send({ url: url('127.0.0.1'), event: EVENT, key: KEY });
    const took = Date.now() - started;
    expect(outcome).to.deep.include({ result: 'retry', code: 'Timeout' });
    expect(took).to.be.within(450, 2000);
    expect(receiver.received).to.have.length(1);
  });

  describe('verifies TLS (a failure is retried: certificates get fixed)', () => {
    it('refuses a certificate from an untrusted CA', async () => {
      const outcome = await sender(['127.0.0.0/8'], { extraCa: [] }).send({ url: url('127.0.0.1'), event: EVENT, key: KEY });
      expect(outcome).to.deep.include({ result: 'retry', code: 'TlsFailed' });
      expect(receiver.received).to.have.length(0);
    });

    it('refuses a certificate for another name', async () => {
      const resolve = table({ 'other.test': [v4('127.0.0.1')] });
      const outcome = await sender(['127.0.0.0/8'], { resolve }).send({ url: url('other.test'), event: EVENT, key: KEY });
      expect(outcome).to.deep.include({ result: 'retry', code: 'TlsFailed' });
      expect(outcome.result === 'retry' && outcome.message).to.match(/other\.test/);
      expect(receiver.received).to.have.length(0);
    });
  });

  describe('schemes', () => {
    it('refuses http: unless the config allows it, then delivers over it', async () => {
      const plain = await WebhookReceiver.http();
      try {
        const target = `http://127.0.0.1:${plain.port}/hook`;
        const refused = await sender(['127.0.0.0/8']).send({ url: target, event: EVENT, key: KEY });
        expect(refused).to.deep.include({ result: 'giveUp', code: 'SchemeNotAllowed' });
        expect(plain.received).to.have.length(0);
        const allowed = new WebhookSender({ policy: new UrlPolicy({ allowHttp: true, allowedCidrs: ['127.0.0.0/8'] }), timeoutMs: 5000 });
        expect(await allowed.send({ url: target, event: EVENT, key: KEY })).to.deep.equal({ result: 'delivered', status: 204 });
        expect(verifyStandardWebhook(SECRET, plain.received[0]!.headers, plain.received[0]!.body)).to.equal(true);
      } finally {
        await plain.close();
      }
    });

    it('refuses file:, ftp: and userinfo before any connection', async () => {
      for (const [target, code] of [
        ['file:///etc/passwd', 'SchemeNotAllowed'],
        [`ftp://127.0.0.1:${receiver.port}/`, 'SchemeNotAllowed'],
        [`https://user:pw@127.0.0.1:${receiver.port}/`, 'UserinfoNotAllowed'],
      ]) {
        expect(await sender(['127.0.0.0/8']).send({ url: target!, event: EVENT, key: KEY }), target).to.deep.include({
          result: 'giveUp',
          code,
        });
      }
      expect(receiver.received).to.have.length(0);
    });
  });

  it('retries what the network does: a refused connection, a name that does not resolve', async () => {
    const closed = await WebhookReceiver.http();
    const port = closed.port;
    await closed.close();
    const refused = await sender(['127.0.0.0/8']).send({ url: `https://127.0.0.1:${port}/`, event: EVENT, key: KEY });
    expect(refused).to.deep.include({ result: 'retry', code: 'ConnectionFailed' });
    expect(refused.result === 'retry' && refused.message).to.match(/ECONNREFUSED/);
    const unknown = await sender([], { resolve: systemResolver }).send({ url: 'https://no-such-host.invalid/', event: EVENT, key: KEY });
    expect(unknown).to.deep.include({ result: 'retry', code: 'DnsFailed' });
  });

  it('keeps a query string out of its logs (receivers put tokens there)', async () => {
    await sender(['127.0.0.0/8']).send({ url: url('127.0.0.1', '/hook?token=s3cr3t'), event: EVENT, key: KEY });
    expect(receiver.received[0]?.path).to.equal('/hook?token=s3cr3t');
    expect(JSON.stringify(logs)).to.not.include('s3cr3t');
    expect(logs[0]?.fields.url).to.equal(`https://127.0.0.1:${receiver.port}/hook?…`);
  });
});
