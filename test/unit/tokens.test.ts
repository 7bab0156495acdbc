import { expect } from 'chai';
import { httpStatusOf } from '../../common/errors.js';
import { JobTokens, TokenError, bearerToken, constantTimeEqual } from '../../common/tokens.js';

const SECRET = 'a'.repeat(32);

async function rejection(p: Promise<unknown>): Promise<TokenError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).to.be.instanceOf(TokenError);
  return err as TokenError;
}

describe('JobTokens', () => {
  const tokens = new JobTokens(SECRET);

  it('round-trips claims and checks scopes', async () => {
    const t = await tokens.issue({ jobId: 'job-1', siteId: 'blog', attempt: 3, scopes: ['site:read', 'job:write'], ttlSeconds: 60 });
    const claims = await tokens.verify(t, 'site:read');
    expect(claims).to.include({ jobId: 'job-1', siteId: 'blog', attempt: 3 });
    expect(claims.scopes).to.deep.equal(['site:read', 'job:write']);
    expect((await rejection(tokens.verify(t, 'kill'))).code).to.equal('TokenForbidden');
  });

  it('rejects expired, forged and foreign tokens', async () => {
    const expired = await tokens.issue({ jobId: 'job-1', siteId: 'blog', attempt: 1, ttlSeconds: 10, now: Date.now() - 60_000 });
    expect((await rejection(tokens.verify(expired))).code).to.equal('TokenExpired');

    const good = await tokens.issue({ jobId: 'job-1', siteId: 'blog', attempt: 1, ttlSeconds: 60 });
    const [h, p, s] = good.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const forgedPayload = Buffer.from(JSON.stringify({ ...claims, site: 'other' })).toString('base64url');
    expect((await rejection(tokens.verify(`${h}.${forgedPayload}.${s}`))).code).to.equal('TokenInvalid');

    const foreign = await new JobTokens('b'.repeat(32)).issue({ jobId: 'job-1', siteId: 'blog', attempt: 1, ttlSeconds: 60 });
    expect((await rejection(tokens.verify(foreign))).code).to.equal('TokenInvalid');

    const noneAlg = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.`;
    expect((await rejection(tokens.verify(noneAlg))).code).to.equal('TokenInvalid');
    expect((await rejection(tokens.verify('garbage'))).code).to.equal('TokenInvalid');
  });

  it('answers 403 for an ended attempt, 401 for an unknown bearer', () => {
    expect(httpStatusOf(new TokenError('AttemptEnded', 'x').code)).to.equal(403);
    expect(httpStatusOf(new TokenError('TokenExpired', 'x').code)).to.equal(401);
  });

  it('refuses a short secret', () => {
    expect(() => new JobTokens('short')).to.throw(/at least 32 bytes/);
  });
});

describe('bearer helpers', () => {
  it('parses Authorization headers', () => {
    expect(bearerToken('Bearer abc.def')).to.equal('abc.def');
    expect(bearerToken('bearer   xyz')).to.equal('xyz');
    expect(bearerToken('Basic abc')).to.equal(null);
    expect(bearerToken(undefined)).to.equal(null);
    expect(bearerToken('Bearer a b')).to.equal(null);
  });
  it('compares in constant time regardless of length', () => {
    expect(constantTimeEqual('secret', 'secret')).to.equal(true);
    expect(constantTimeEqual('secret', 'secreT')).to.equal(false);
    expect(constantTimeEqual('secret', 'secret-longer')).to.equal(false);
  });
});
