/**
 * A follow-up's token against the real storage service, as a hostile runner (or an agent that
 * stole the token) would use it: with `follows` it reads the followed job's output and session,
 * and nothing else of that job, and writes nothing of it.
 */
import { expect } from 'chai';
import { StorageClient, StorageRequestError } from '../../common/storage-client.js';
import { type TestStorage, startTestStorage } from '../support/storage.js';

describe('storage: follow-up tokens', () => {
  let storage: TestStorage;
  const client = (token: string) => new StorageClient({ baseUrl: storage.url, token });
  const denied = async (p: Promise<unknown>, status: number, what: string) => {
    const err = await p.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err, what).to.be.instanceOf(StorageRequestError);
    expect((err as StorageRequestError).status, what).to.equal(status);
  };

  before(async () => {
    storage = await startTestStorage();
    for (const [name, body] of [
      ['output.tar.gz', 'OUTPUT'],
      ['session.jsonl', '{"type":"session_meta"}\n'],
      ['log', 'LOG'],
      ['diff.patch', 'DIFF'],
    ] as const)
      await storage.admin.putJobObject('first', name, Buffer.from(body));
  });
  after(() => storage.close());

  it("reads the followed job's output and session, as application/jsonl", async () => {
    const token = await storage.tokens.issue({ jobId: 'second', siteId: 'blog', attempt: 1, ttlSeconds: 60, follows: 'first' });
    expect(await (await client(token).getJobObject('first', 'output.tar.gz')).body.text()).to.equal('OUTPUT');
    const res = await fetch(`${storage.url}/jobs/first/session.jsonl`, { headers: { authorization: `Bearer ${token}` } });
    expect([res.status, res.headers.get('content-type')]).to.deep.equal([200, 'application/jsonl']);
    expect(await res.text()).to.equal('{"type":"session_meta"}\n');
  });

  it('and nothing else of it: not its log, diff, manifest or listing, no write, not another job', async () => {
    const token = await storage.tokens.issue({ jobId: 'second', siteId: 'blog', attempt: 1, ttlSeconds: 60, follows: 'first' });
    const c = client(token);
    await denied(c.getJobObject('first', 'log'), 403, 'log');
    await denied(c.getJobObject('first', 'diff.patch'), 403, 'diff');
    await denied(c.getJobObject('first', 'manifest.json'), 403, 'manifest');
    await denied(c.getJob('first'), 403, 'listing');
    await denied(c.putJobObject('first', 'output.tar.gz', Buffer.from('REPLACED')), 403, 'write output');
    await denied(c.putJobObject('first', 'session.jsonl', Buffer.from('REPLACED')), 403, 'write session');
    await denied(c.getJobObject('third', 'output.tar.gz'), 403, 'another job');
    expect(await (await storage.admin.getJobObject('first', 'output.tar.gz')).body.text()).to.equal('OUTPUT');
    // its own job as before: the session is a job object like the others
    await c.putJobObject('second', 'session.jsonl', Buffer.from('{"type":"session_meta"}\n'));
    expect(await (await c.getJobObject('second', 'session.jsonl')).body.text()).to.equal('{"type":"session_meta"}\n');
  });

  it('refuses a token without the claim, one without site:read, and one whose attempt has ended', async () => {
    const plain = await storage.tokens.issue({ jobId: 'second', siteId: 'blog', attempt: 1, ttlSeconds: 60 });
    await denied(client(plain).getJobObject('first', 'output.tar.gz'), 403, 'no follows claim');
    const writeOnly = await storage.tokens.issue({
      jobId: 'second',
      siteId: 'blog',
      attempt: 1,
      ttlSeconds: 60,
      follows: 'first',
      scopes: ['job:write'],
    });
    await denied(client(writeOnly).getJobObject('first', 'output.tar.gz'), 403, 'no site:read');
    const ended = await storage.tokens.issue({ jobId: 'fourth', siteId: 'blog', attempt: 1, ttlSeconds: 60, follows: 'first' });
    expect(await (await client(ended).getJobObject('first', 'output.tar.gz')).body.text()).to.equal('OUTPUT');
    await storage.admin.seal('fourth', 1);
    await denied(client(ended).getJobObject('first', 'output.tar.gz'), 403, 'sealed attempt');
  });
});
