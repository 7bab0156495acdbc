import { createHmac, randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { PagewrightError } from '../../common/errors.js';
import { type PreviewLink, previewLinkUrl, signPreviewLink, verifyPreviewLink } from '../../common/preview-link.js';

const SECRET = randomBytes(32).toString('hex');
const NOW = new Date('2026-12-01T12:00:00Z');
const IN_AN_HOUR = new Date(NOW.getTime() + 3600_000);
const VERSION = 'a'.repeat(64);

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof PagewrightError) return err.code;
    throw err;
  }
  throw new Error('did not throw');
}

/** The token with its payload replaced by `payload` (the mac is kept). */
function withPayload(token: string, payload: unknown): string {
  const [, mac] = token.split('.') as [string, string];
  return `${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${mac}`;
}

describe('preview links (common/preview-link.ts)', () => {
  it('round-trips a job link and a site link, version included', () => {
    const job: PreviewLink = { kind: 'job', namespace: 'team-a', name: 'bakery-holiday-hours', expiresAt: IN_AN_HOUR };
    expect(verifyPreviewLink(signPreviewLink(job, SECRET), SECRET, NOW)).to.deep.equal(job);
    const site: PreviewLink = { kind: 'site', namespace: 'team-a', name: 'harbor-lane-bakery', version: VERSION, expiresAt: IN_AN_HOUR };
    expect(verifyPreviewLink(signPreviewLink(site, SECRET), SECRET, NOW)).to.deep.equal(site);
    const current: PreviewLink = { kind: 'site', namespace: 'team-a', name: 'harbor-lane-bakery', expiresAt: IN_AN_HOUR };
    expect(verifyPreviewLink(signPreviewLink(current, SECRET), SECRET, NOW)).to.deep.equal(current);
  });

  it('is a URL-safe path segment of modest length', () => {
    const token = signPreviewLink(
      { kind: 'site', namespace: 'n'.repeat(63), name: 's'.repeat(253), version: VERSION, expiresAt: IN_AN_HOUR },
      SECRET,
    );
    expect(token).to.match(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(token.length, 'the longest names').to.be.below(700);
    const typical = signPreviewLink({ kind: 'job', namespace: 'pagewright', name: 'bakery-holiday-hours', expiresAt: IN_AN_HOUR }, SECRET);
    expect(typical.length).to.be.below(160);
    expect(previewLinkUrl('https://preview.example.com/', token, 'job')).to.equal(`https://preview.example.com/p/${token}/review`);
    expect(previewLinkUrl('https://preview.example.com', token, 'site')).to.equal(`https://preview.example.com/p/${token}/files/`);
  });

  it('expires: valid one second before expiresAt, refused at it and after', () => {
    const token = signPreviewLink({ kind: 'job', namespace: 'ns', name: 'j', expiresAt: IN_AN_HOUR }, SECRET);
    expect(verifyPreviewLink(token, SECRET, new Date(IN_AN_HOUR.getTime() - 1000)).name).to.equal('j');
    expect(codeOf(() => verifyPreviewLink(token, SECRET, IN_AN_HOUR))).to.equal('TokenExpired');
    expect(codeOf(() => verifyPreviewLink(token, SECRET, new Date(IN_AN_HOUR.getTime() + 86400_000)))).to.equal('TokenExpired');
  });

  it('refuses a link signed with another secret', () => {
    const token = signPreviewLink({ kind: 'job', namespace: 'ns', name: 'j', expiresAt: IN_AN_HOUR }, randomBytes(32).toString('hex'));
    expect(codeOf(() => verifyPreviewLink(token, SECRET, NOW))).to.equal('TokenInvalid');
  });

  it('refuses every tampered payload: another name, namespace, kind, version or a later expiry', () => {
    const token = signPreviewLink({ kind: 'site', namespace: 'ns', name: 'site-a', version: VERSION, expiresAt: IN_AN_HOUR }, SECRET);
    const exp = Math.floor(IN_AN_HOUR.getTime() / 1000);
    for (const payload of [
      { k: 'site', ns: 'ns', n: 'site-b', v: VERSION, exp },
      { k: 'site', ns: 'other', n: 'site-a', v: VERSION, exp },
      { k: 'job', ns: 'ns', n: 'site-a', exp },
      { k: 'site', ns: 'ns', n: 'site-a', v: 'b'.repeat(64), exp },
      { k: 'site', ns: 'ns', n: 'site-a', exp },
      { k: 'site', ns: 'ns', n: 'site-a', v: VERSION, exp: exp + 86400 * 365 },
    ]) {
      expect(
        codeOf(() => verifyPreviewLink(withPayload(token, payload), SECRET, NOW)),
        JSON.stringify(payload),
      ).to.equal('TokenInvalid');
    }
  });

  it('refuses a flipped mac character and a non-canonical spelling of the mac', () => {
    const token = signPreviewLink({ kind: 'job', namespace: 'ns', name: 'j', expiresAt: IN_AN_HOUR }, SECRET);
    const [payload, mac] = token.split('.') as [string, string];
    const flip = (c: string) => (c === 'A' ? 'B' : 'A');
    expect(codeOf(() => verifyPreviewLink(`${payload}.${flip(mac[0]!)}${mac.slice(1)}`, SECRET, NOW))).to.equal('TokenInvalid');
    // the last base64url character of 32 bytes carries 4 bits and 2 unused ones: flipping an unused bit decodes to the same bytes
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(mac[42]!);
    const twin = `${payload}.${mac.slice(0, 42)}${alphabet[last ^ 1]}`;
    expect(Buffer.from(twin.split('.')[1]!, 'base64url').equals(Buffer.from(mac, 'base64url'))).to.equal(true);
    expect(codeOf(() => verifyPreviewLink(twin, SECRET, NOW))).to.equal('TokenInvalid');
  });

  it('refuses malformed tokens before any parsing', () => {
    const token = signPreviewLink({ kind: 'job', namespace: 'ns', name: 'j', expiresAt: IN_AN_HOUR }, SECRET);
    for (const bad of ['', '.', 'abc', `${token}.x`, token.replace('.', '!'), `${token}=`, `a.${'b'.repeat(43)}`, 'x'.repeat(5000)]) {
      expect(
        codeOf(() => verifyPreviewLink(bad, SECRET, NOW)),
        bad.slice(0, 40),
      ).to.equal('TokenInvalid');
    }
  });

  it('refuses a correctly signed payload of the wrong shape (what a leaked secret could forge is still checked)', () => {
    const sign = (payload: unknown) => {
      const encoded = Buffer.from(JSON.stringify(payload)).toString('base64url');
      const mac = createHmac('sha256', SECRET).update(`pagewright-preview-link/v1.${encoded}`).digest('base64url');
      return `${encoded}.${mac}`;
    };
    const exp = Math.floor(IN_AN_HOUR.getTime() / 1000);
    expect(verifyPreviewLink(sign({ k: 'job', ns: 'ns', n: 'j', exp }), SECRET, NOW).name).to.equal('j');
    for (const payload of [
      { k: 'job', ns: 'ns', n: 'j', v: VERSION, exp },
      { k: 'pod', ns: 'ns', n: 'j', exp },
      { k: 'job', ns: '../x', n: 'j', exp },
      { k: 'job', ns: 'ns', n: 'J/../k', exp },
      { k: 'job', ns: 'ns', n: 'j', exp, extra: 1 },
      { k: 'job', ns: 'ns', n: 'j', exp: 'never' },
    ]) {
      expect(
        codeOf(() => verifyPreviewLink(sign(payload), SECRET, NOW)),
        JSON.stringify(payload),
      ).to.equal('TokenInvalid');
    }
  });

  it('needs a secret of at least 32 bytes, and refuses to sign a version into a job link', () => {
    const link: PreviewLink = { kind: 'job', namespace: 'ns', name: 'j', expiresAt: IN_AN_HOUR };
    expect(() => signPreviewLink(link, 'short')).to.throw(/at least 32 bytes/);
    expect(() => signPreviewLink({ ...link, version: VERSION }, SECRET)).to.throw(/names no version/);
  });
});
