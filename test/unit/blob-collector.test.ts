/**
 * The collector against the two orders that would lose data, with no grace period to hide
 * behind (gc.ts): a blob written and not yet referenced, and a reference written while the
 * collector was reading the references.
 */
import { mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { expect } from 'chai';
import { silentLogger } from '../../common/logger.js';
import { BlobStore } from '../../storage/blob-store.js';
import { BlobCollector } from '../../storage/gc.js';
import { FsRecords } from '../../storage/fs-records.js';
import { RefStore } from '../../storage/ref-store.js';

const LIMITS = { maxBytes: 1024 * 1024 };
const QUOTA = { maxJobBytes: 1024 * 1024 };
const HOURS_AGO = new Date(Date.now() - 2 * 3600 * 1000);

describe('BlobCollector', () => {
  let dir: string;
  let blobs: BlobStore;
  let refs: RefStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-gc-'));
    blobs = new BlobStore(dir);
    await blobs.init();
    refs = new RefStore(new FsRecords(dir, blobs.tmpDir));
  });
  afterEach(async () => {
    await blobs.close();
    await rm(dir, { recursive: true, force: true });
  });

  const collector = (r: RefStore = refs) =>
    new BlobCollector({ blobs, refs: r, logger: silentLogger }, { graceSeconds: 0, intervalSeconds: 0 });
  const age = (version: string) => utimes(blobs.pathOf(version), HOURS_AGO, HOURS_AGO);

  it('never removes a blob between its upload and the record that references it', async () => {
    const during = await blobs.put(Readable.from([Buffer.from('content')]), LIMITS, async (blob) => {
      await age(blob.version); // as old as any blob the collector may take
      const report = await collector().sweep();
      await refs.setJobObject('job-1', 'log', blob, QUOTA);
      return { blob, report };
    });
    expect(during.report).to.deep.equal({ deleted: 0, kept: 1, bytes_freed: 0 });
    expect(await blobs.size(during.blob)).to.equal(7);
  });

  it('keeps a blob referenced while the sweep was reading the references, though no longer pinned when it gets to it', async () => {
    // the reference lands just after the collector read the records, and the upload is over
    let landed: string | null = null;
    class RacingRefs extends RefStore {
      override async referencedBlobs(b: BlobStore): Promise<Set<string>> {
        const seen = await super.referencedBlobs(b);
        landed = await blobs.put(Readable.from([Buffer.from('late')]), LIMITS, async (blob) => {
          await refs.setJobObject('job-2', 'log', blob, QUOTA);
          return blob.version;
        });
        await age(landed);
        return seen;
      }
    }
    const report = await collector(new RacingRefs(new FsRecords(dir, blobs.tmpDir))).sweep();
    expect(landed).to.be.a('string');
    expect(report.deleted).to.equal(0);
    expect(await blobs.size({ version: landed!, size: 4 })).to.equal(4);
    // and the next sweep sees the reference
    expect(await collector().sweep()).to.deep.equal({ deleted: 0, kept: 1, bytes_freed: 0 });
  });

  it('removes an old unreferenced blob and keeps a young one', async () => {
    const old = await blobs.put(Readable.from([Buffer.from('old')]), LIMITS, async (b) => b);
    await age(old.version);
    const young = await blobs.put(Readable.from([Buffer.from('young')]), LIMITS, async (b) => b);
    const graced = new BlobCollector({ blobs, refs, logger: silentLogger }, { graceSeconds: 60, intervalSeconds: 0 });
    expect(await graced.sweep()).to.deep.equal({ deleted: 1, kept: 1, bytes_freed: 3 });
    expect(await blobs.size(old)).to.equal(null);
    expect(await blobs.size(young)).to.equal(5);
  });
});
