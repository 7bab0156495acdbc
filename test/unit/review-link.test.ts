import { expect } from 'chai';
import type { PagewrightJob } from '../../common/job-resource.js';
import { verifyPreviewLink } from '../../common/preview-link.js';
import { reviewLinkFor, reviewLinkSettings } from '../../manager/review-link.js';

const SECRET = 'x'.repeat(40);

describe('signed review links in the job status (manager/review-link.ts)', () => {
  it('none without an Ingress; both settings or neither, else the manager does not start', () => {
    expect(reviewLinkSettings({ previewLinkTtlSeconds: 60 })).to.equal(null);
    expect(() => reviewLinkSettings({ previewBaseUrl: 'https://p.example', previewLinkTtlSeconds: 60 })).to.throw(/set together/);
    expect(() => reviewLinkSettings({ previewLinkSecret: SECRET, previewLinkTtlSeconds: 60 })).to.throw(/set together/);
  });

  it("links to the job's review page under the base URL, signed for that job, expiring after the TTL", () => {
    const s = reviewLinkSettings({
      previewBaseUrl: 'https://p.example/previews/',
      previewLinkSecret: SECRET,
      previewLinkTtlSeconds: 3600,
    })!;
    const now = new Date('2026-12-02T10:00:00.700Z');
    const job = { metadata: { name: 'j1', namespace: 'shop' } } as PagewrightJob;
    const link = reviewLinkFor(job, s, now);
    expect(link.expiresAt).to.equal('2026-12-02T11:00:00.000Z');
    const token = /^https:\/\/p\.example\/previews\/p\/([^/]+)\/review$/.exec(link.url)?.[1];
    expect(token, link.url).to.be.a('string');
    expect(verifyPreviewLink(token!, SECRET, now)).to.deep.include({ kind: 'job', namespace: 'shop', name: 'j1' });
    expect(() => verifyPreviewLink(token!, SECRET, new Date('2026-12-02T11:00:00.000Z'))).to.throw(/expired/);
    expect(() => verifyPreviewLink(token!, 'y'.repeat(40), now)).to.throw();
  });
});
