/**
 * The events a site's webhook receives (manager/webhooks/events.ts), read back with the
 * cloudevents SDK, and the signing key rules (signature.ts). Signatures themselves are verified
 * on a real receiver, by the spec's own steps: test/integration/webhook-delivery.test.ts.
 */
import { expect } from 'chai';
import { type CloudEvent, HTTP } from 'cloudevents';
import {
  type EndedJobRef,
  type SiteHistoryEntry,
  type SiteRef,
  WebhookEventData,
  encodeEvent,
  jobEvent,
  siteEvent,
} from '../../manager/webhooks/events.js';
import { deriveSigningKey, formatSigningSecret, parseSigningSecret } from '../../manager/webhooks/signature.js';

const T0 = Date.parse('2026-03-01T10:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const v = (n: number) => n.toString(16).padStart(64, '0');
const SITE: SiteRef = { namespace: 'web', name: 'bakery', uid: '11111111-2222-3333-4444-555555555555' };

function entry(
  sequence: number,
  action: SiteHistoryEntry['action'] = 'published',
  extra: Partial<SiteHistoryEntry> = {},
): SiteHistoryEntry {
  return { sequence, action, version: v(sequence), time: iso(T0 + sequence * 60_000), job: `job-${sequence}`, ...extra };
}

function endedJob(name: string, atMs: number, extra: Partial<EndedJobRef> = {}): EndedJobRef {
  return {
    namespace: 'web',
    name,
    uid: `uid-${name}`,
    attempt: 1,
    phase: 'Succeeded',
    completionTime: iso(atMs),
    baseVersion: v(1),
    outputVersion: v(99),
    ...extra,
  };
}

describe('webhook events', () => {
  const published = entry(4, 'published', { previousVersion: v(3), previewUrl: 'https://preview.example.com/s/abc?sig=1' });

  it('are CloudEvents 1.0 in structured mode that the SDK reads back and validates, with data the schema accepts', () => {
    const event = siteEvent(SITE, published);
    const { body, contentType } = encodeEvent(event);
    expect(contentType).to.equal('application/cloudevents+json; charset=utf-8');
    const back = HTTP.toEvent({ headers: { 'content-type': contentType }, body }) as CloudEvent<unknown>;
    expect(back.validate()).to.equal(true);
    expect({
      id: back.id,
      type: back.type,
      source: back.source,
      subject: back.subject,
      time: back.time,
      specversion: back.specversion,
    }).to.deep.equal({
      id: `pws_${SITE.uid}_4`,
      type: 'dev.pagewright.site.published',
      source: '/namespaces/web/pagewrightsites/bakery',
      subject: 'bakery',
      time: iso(T0 + 4 * 60_000),
      specversion: '1.0',
    });
    expect(WebhookEventData.parse(back.data)).to.deep.equal({
      site: 'bakery',
      namespace: 'web',
      action: 'published',
      version: v(4),
      previousVersion: v(3),
      by: { kind: 'job', name: 'job-4' },
      fetch: { command: `pagewright sites pull bakery --version ${v(4)} -n web DIR`, url: 'https://preview.example.com/s/abc?sig=1' },
    });
  });

  it('are the same bytes when derived again (a restart re-sends the same event)', () => {
    expect(encodeEvent(siteEvent(SITE, published)).body).to.equal(encodeEvent(siteEvent(SITE, { ...published })).body);
  });

  it('of a job: source is the job, subject the site; a failed job has no version to fetch', () => {
    const ok: EndedJobRef = endedJob('edit-1', T0);
    const e = jobEvent(SITE, ok);
    expect(e).to.deep.include({
      id: 'pwj_uid-edit-1_1_succeeded',
      type: 'dev.pagewright.job.succeeded',
      source: '/namespaces/web/pagewrightjobs/edit-1',
      subject: 'bakery',
    });
    expect(e.data).to.deep.include({ action: 'succeeded', version: v(99) });
    const failed = jobEvent(SITE, endedJob('edit-2', T0, { phase: 'Failed', reason: 'CodexFailed', attempt: 3, outputVersion: undefined }));
    expect(failed.id).to.equal('pwj_uid-edit-2_3_failed');
    expect(failed.data).to.deep.equal({
      site: 'bakery',
      namespace: 'web',
      action: 'failed',
      job: { name: 'edit-2', uid: 'uid-edit-2', attempt: 3, phase: 'Failed', reason: 'CodexFailed', baseVersion: v(1) },
    });
    expect(jobEvent(SITE, endedJob('edit-3', T0, { phase: 'Cancelled' })).type).to.equal('dev.pagewright.job.cancelled');
  });

  it('have ids without a "." (the Standard Webhooks signature scheme forbids it)', () => {
    expect(siteEvent(SITE, published).id).to.not.include('.');
    expect(jobEvent(SITE, endedJob('a.b.c', T0, { uid: 'u' })).id).to.not.include('.');
  });

  it('refuse a version that is not a sha256', () => {
    expect(() => siteEvent(SITE, { ...published, version: 'latest' })).to.throw();
  });
});

describe('webhook signing keys', () => {
  const key32 = Buffer.alloc(32, 7);

  it('are whsec_ and base64 of 24..64 bytes, as Standard Webhooks serialises them', () => {
    expect(parseSigningSecret(`whsec_${key32.toString('base64')}`)).to.deep.equal(key32);
    expect(parseSigningSecret(`whsec_${Buffer.alloc(24, 1).toString('base64')}\n`)).to.have.length(24);
    for (const bad of [
      key32.toString('base64'),
      'whsec_',
      `whsec_${Buffer.alloc(16).toString('base64')}`,
      `whsec_${Buffer.alloc(65).toString('base64')}`,
      'whsec_not base64!',
    ]) {
      expect(() => parseSigningSecret(bad), bad).to.throw(/webhook secret/);
    }
  });

  it("are derived per site from the manager's secret: stable, distinct, and in the spec's serialisation", () => {
    const root = 'r'.repeat(64);
    const a = deriveSigningKey(root, 'uid-a');
    expect(a).to.have.length(32);
    expect(deriveSigningKey(root, 'uid-a')).to.deep.equal(a);
    expect(deriveSigningKey(root, 'uid-b')).to.not.deep.equal(a);
    expect(deriveSigningKey('s'.repeat(64), 'uid-a'), 'another root').to.not.deep.equal(a);
    expect(parseSigningSecret(formatSigningSecret(a))).to.deep.equal(a);
  });
});
