import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { OffThreadHasher } from '../../storage/off-thread-hasher.js';

const sha256 = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest('hex');

describe('OffThreadHasher', () => {
  let hasher: OffThreadHasher;
  beforeEach(() => {
    hasher = new OffThreadHasher();
  });
  afterEach(() => hasher.close());

  /** Feeds `data` in chunks of `chunkSize`, awaiting backpressure as the blob store does. */
  async function hashInChunks(data: Buffer, chunkSize: number): Promise<string> {
    const session = hasher.session();
    for (let i = 0; i < data.length; i += chunkSize) await session.update(data.subarray(i, i + chunkSize));
    return session.digest();
  }

  it('gives the sha256 of the empty input', async () => {
    expect(await hasher.session().digest()).to.equal(sha256());
  });

  it('matches node:crypto for any chunking, across buffer boundaries', async () => {
    const data = randomBytes((3 << 20) + 12345);
    for (const chunkSize of [1, 7, 65536, 1 << 20, (1 << 20) + 1, data.length]) {
      const input = chunkSize === 1 ? data.subarray(0, 5000) : data;
      expect(await hashInChunks(input, chunkSize), `chunks of ${chunkSize}`).to.equal(sha256(input));
    }
  });

  it('makes the writer wait when the worker falls 8 MiB behind, and still hashes every byte', async () => {
    const session = hasher.session();
    const chunk = randomBytes(1 << 20);
    let waited = 0;
    for (let i = 0; i < 32; i++) {
      const behind = session.update(chunk);
      if (behind !== undefined) {
        waited++;
        await behind;
      }
    }
    expect(waited).to.be.greaterThan(0);
    expect(await session.digest()).to.equal(sha256(...Array<Buffer>(32).fill(chunk)));
  });

  it('keeps interleaved sessions apart; a dropped one does not disturb the others', async () => {
    const [a, b, c] = [randomBytes(3 << 20), randomBytes(2 << 20), randomBytes(1 << 20)];
    const [sa, sb, sc] = [hasher.session(), hasher.session(), hasher.session()];
    for (let i = 0; i < a.length; i += 65536) {
      await sa.update(a.subarray(i, i + 65536));
      if (i < b.length) await sb.update(b.subarray(i, i + 65536));
      if (i < c.length) await sc.update(c.subarray(i, i + 65536));
    }
    sb.drop();
    expect(await Promise.all([sa.digest(), sc.digest()])).to.deep.equal([sha256(a), sha256(c)]);
  });

  it('does not change the caller’s chunks, and works again after close()', async () => {
    const data = randomBytes(2 << 20);
    const copy = Buffer.from(data);
    expect(await hashInChunks(data, 65536)).to.equal(sha256(copy));
    expect(data.equals(copy)).to.equal(true);
    await hasher.close();
    expect(await hashInChunks(data, 1 << 20)).to.equal(sha256(copy));
  });

  it('fails the sessions in progress when the worker stops under them', async () => {
    const session = hasher.session();
    await session.update(randomBytes(1 << 20));
    await hasher.close();
    const err = await session.digest().then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).to.match(/hashing worker exited/);
  });
});
