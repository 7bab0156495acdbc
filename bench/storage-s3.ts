/**
 * Storage on S3 (issue 18): 1 GiB up and down through the storage service on its s3 backend
 * (bearer auth, off-thread sha256, a multipart Upload of 8 MiB parts 4 at a time to a fresh key,
 * the ref records in the bucket) vs. the AWS SDK going straight to the same SeaweedFS: lib-storage's
 * Upload with the same part and queue size to a fresh key, and GetObject streamed to a counting
 * sink. Same bytes (random, written once to a temp file and streamed from it), same machine,
 * same run, alternating which side goes first. Headline: storage / SDK throughput each way
 * (goal >= 0.9) and the storage process's peak RSS at 1 GiB over its peak at 64 MiB (flat: ~1.0).
 *
 * Storage runs from dist/ in a process of its own (bench/support/services.ts), so that its RSS
 * (VmHWM, reset through /proc/PID/clear_refs before each transfer) and CPU are its alone; the
 * CPU of this process (the client either way) and of weed are reported too, as where time goes.
 *
 * The small object's peak is taken on a fresh process before any big transfer and again after
 * them all: if the second equals the big one's, what grew is the process, not a per-object cost.
 *
 *   make bench-s3        (BENCH_RUNS=5, BENCH_S3_MIB=1024, BENCH_S3_SMALL_MIB=64)
 *   BENCH_S3_CPU_PROF=DIR   also writes storage's CPU profile (node --cpu-prof) into DIR
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { StorageClient } from '../common/storage-client.js';
import { pidsWithCmdline } from '../test/support/processes.js';
import { s3Client, startSeaweedFs } from '../test/support/seaweedfs.js';
import { RUNS, alternating, headline, printTable, record, rss, sized, summarize, summarizeAll, timed } from './lib.js';
import { startStorageChild } from './support/services.js';

const MIB = 1024 * 1024;
const SIZE_MIB = sized('BENCH_S3_MIB', 1024, 8);
const SMALL_MIB = sized('BENCH_S3_SMALL_MIB', 64, 2);
/** As storage/s3-backend.ts uploads: parts of 8 MiB, 4 in flight. */
const PART_BYTES = 8 * MIB;
const QUEUE_SIZE = 4;
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** utime + stime of a process, in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** A file of `mib` MiB of random bytes and its sha256, written once. */
async function randomFile(path: string, mib: number): Promise<string> {
  const hash = createHash('sha256');
  let left = mib;
  await pipeline(
    new Readable({
      read() {
        if (left-- <= 0) return void this.push(null);
        const chunk = randomBytes(MIB);
        hash.update(chunk);
        this.push(chunk);
      },
    }),
    createWriteStream(path),
  );
  return hash.digest('hex');
}

/** Counts a body's bytes without keeping them; throws unless it is `expected` long. */
async function drain(body: Readable | AsyncIterable<Uint8Array>, expected: number, what: string): Promise<void> {
  let bytes = 0;
  await pipeline(
    body,
    new Writable({
      write(c: Buffer, _e, cb) {
        bytes += c.length;
        cb();
      },
    }),
  );
  if (bytes !== expected) throw new Error(`${what}: ${bytes} bytes, expected ${expected}`);
}

const dir = await mkdtemp(join(tmpdir(), 'pw-bench-s3-'));
const bigFile = join(dir, 'big');
const smallFile = join(dir, 'small');
const [bigSha, smallSha] = [await randomFile(bigFile, SIZE_MIB), await randomFile(smallFile, SMALL_MIB)];
const bytesOf = (mib: number) => mib * MIB;

const server = await startSeaweedFs();
const s3 = s3Client(server, server);
const weedPid = (await pidsWithCmdline(`-s3.port=${new URL(server.endpoint).port}`))[0];
const STORAGE_BUCKET = 'bench-storage';
const SDK_BUCKET = 'bench-sdk';
let storage: Awaited<ReturnType<typeof startStorageChild>> | undefined;

interface Transfer {
  mibs: number;
  /** CPU seconds per GiB moved: this process, storage (0 for the SDK side), weed. */
  clientCpu: number;
  storageCpu: number;
  weedCpu: number;
  /** Storage's VmHWM during the transfer, MiB (0 for the SDK side). */
  peakMiB: number;
}

/** Times `fn`, with the CPU it cost each process and storage's peak RSS while it ran. */
async function measured(mib: number, fn: () => Promise<void>): Promise<Transfer> {
  const pid = storage!.pid;
  await writeFile(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM to the current RSS
  const before = { client: selfCpu(), storage: await cpuSeconds(pid), weed: weedPid ? await cpuSeconds(weedPid) : 0 };
  const { ms } = await timed(fn);
  const after = { client: selfCpu(), storage: await cpuSeconds(pid), weed: weedPid ? await cpuSeconds(weedPid) : 0 };
  const perGiB = 1024 / mib;
  return {
    mibs: mib / (ms / 1000),
    clientCpu: (after.client - before.client) * perGiB,
    storageCpu: (after.storage - before.storage) * perGiB,
    weedCpu: (after.weed - before.weed) * perGiB,
    peakMiB: (await rss(pid)).peakMiB,
  };
}

let sdkKeys = 0;
async function sdkUpload(file: string, mib: number): Promise<{ key: string; t: Transfer }> {
  const key = `objects/${sdkKeys++}-${randomBytes(8).toString('hex')}`;
  const t = await measured(mib, async () => {
    const upload = new Upload({
      client: s3,
      params: { Bucket: SDK_BUCKET, Key: key, Body: createReadStream(file), ContentType: 'application/octet-stream' },
      partSize: PART_BYTES,
      queueSize: QUEUE_SIZE,
      leavePartsOnError: false,
    });
    await upload.done();
  });
  return { key, t: { ...t, peakMiB: 0 } };
}

async function sdkDownload(key: string, mib: number): Promise<Transfer> {
  const t = await measured(mib, async () => {
    const got = await s3.send(new GetObjectCommand({ Bucket: SDK_BUCKET, Key: key }));
    await drain(got.Body as Readable, bytesOf(mib), `GetObject ${key}`);
  });
  await s3.send(new DeleteObjectCommand({ Bucket: SDK_BUCKET, Key: key }));
  return { ...t, peakMiB: 0 };
}

async function sdkRoundTrip(file: string, mib: number): Promise<{ up: Transfer; down: Transfer }> {
  const { key, t: up } = await sdkUpload(file, mib);
  return { up, down: await sdkDownload(key, mib) };
}

async function storageRoundTrip(
  client: StorageClient,
  file: string,
  sha256: string,
  mib: number,
): Promise<{ up: Transfer; down: Transfer }> {
  const up = await measured(mib, async () => {
    const stored = await client.putSiteArtifact('bench', createReadStream(file), { sha256, size: bytesOf(mib) });
    if (stored.version !== sha256 || stored.size !== bytesOf(mib)) throw new Error(`storage stored ${JSON.stringify(stored)}`);
  });
  const down = await measured(mib, async () => {
    const { body } = await client.downloadArtifact('bench');
    await drain(body, bytesOf(mib), 'storage GET /sites/bench/artifact');
  });
  return { up, down };
}

const rows = {
  sdkUp: [] as number[],
  sUp: [] as number[],
  upRatio: [] as number[],
  sdkDown: [] as number[],
  sDown: [] as number[],
  downRatio: [] as number[],
  idle: [] as number[],
  smallPeak: [] as number[],
  smallPeakAfter: [] as number[],
  bigPeak: [] as number[],
  rssRatio: [] as number[],
  sdkUpClientCpu: [] as number[],
  sdkUpWeedCpu: [] as number[],
  sUpClientCpu: [] as number[],
  sUpStorageCpu: [] as number[],
  sUpWeedCpu: [] as number[],
  sdkDownClientCpu: [] as number[],
  sdkDownWeedCpu: [] as number[],
  sDownClientCpu: [] as number[],
  sDownStorageCpu: [] as number[],
  sDownWeedCpu: [] as number[],
};
try {
  await s3.send(new CreateBucketCommand({ Bucket: STORAGE_BUCKET }));
  await s3.send(new CreateBucketCommand({ Bucket: SDK_BUCKET }));
  storage = await startStorageChild({
    PAGEWRIGHT_STORAGE_BACKEND: 's3',
    PAGEWRIGHT_S3_BUCKET: STORAGE_BUCKET,
    PAGEWRIGHT_S3_ENDPOINT: server.endpoint,
    PAGEWRIGHT_S3_REGION: server.region,
    PAGEWRIGHT_S3_INSECURE: 'true',
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    PAGEWRIGHT_STORAGE_MAX_ARTIFACT_BYTES: String(Math.max(4 * 1024 ** 3, 2 * bytesOf(SIZE_MIB))),
    PAGEWRIGHT_STORAGE_GC_INTERVAL_SECONDS: '0',
    ...(process.env.BENCH_S3_CPU_PROF ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_S3_CPU_PROF}` } : {}),
  });
  const client = new StorageClient({ baseUrl: storage.url, token: storage.adminToken });
  // warm-up, measured by neither side: connections, lazily loaded code, the hashing worker
  await storageRoundTrip(client, smallFile, smallSha, SMALL_MIB);
  await sdkRoundTrip(smallFile, SMALL_MIB);
  // the small object's peaks first, on a process that has not yet moved a big one
  for (let run = 0; run < RUNS; run++) {
    rows.idle.push((await rss(storage.pid)).rssMiB);
    const small = await storageRoundTrip(client, smallFile, smallSha, SMALL_MIB);
    rows.smallPeak.push(Math.max(small.up.peakMiB, small.down.peakMiB));
  }
  for (let run = 0; run < RUNS; run++) {
    const [sdk, s] = await alternating(
      run,
      () => sdkRoundTrip(bigFile, SIZE_MIB),
      () => storageRoundTrip(client, bigFile, bigSha, SIZE_MIB),
    );
    rows.sdkUp.push(sdk.up.mibs);
    rows.sUp.push(s.up.mibs);
    rows.upRatio.push(s.up.mibs / sdk.up.mibs);
    rows.sdkDown.push(sdk.down.mibs);
    rows.sDown.push(s.down.mibs);
    rows.downRatio.push(s.down.mibs / sdk.down.mibs);
    rows.bigPeak.push(Math.max(s.up.peakMiB, s.down.peakMiB));
    rows.sdkUpClientCpu.push(sdk.up.clientCpu);
    rows.sdkUpWeedCpu.push(sdk.up.weedCpu);
    rows.sUpClientCpu.push(s.up.clientCpu);
    rows.sUpStorageCpu.push(s.up.storageCpu);
    rows.sUpWeedCpu.push(s.up.weedCpu);
    rows.sdkDownClientCpu.push(sdk.down.clientCpu);
    rows.sdkDownWeedCpu.push(sdk.down.weedCpu);
    rows.sDownClientCpu.push(s.down.clientCpu);
    rows.sDownStorageCpu.push(s.down.storageCpu);
    rows.sDownWeedCpu.push(s.down.weedCpu);
  }
  for (let run = 0; run < RUNS; run++) {
    const small = await storageRoundTrip(client, smallFile, smallSha, SMALL_MIB);
    rows.smallPeakAfter.push(Math.max(small.up.peakMiB, small.down.peakMiB));
  }
  const smallMedian = summarize(rows.smallPeak).median;
  rows.rssRatio = rows.bigPeak.map((p) => p / smallMedian);
} finally {
  await storage?.stop();
  s3.destroy();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
}

printTable(`storage on S3 (SeaweedFS) vs the AWS SDK straight to it, ${SIZE_MIB} MiB objects`, [
  ['SDK upload (lib-storage Upload, 8 MiB x 4)', rows.sdkUp, 'MiB/s'],
  ['storage upload', rows.sUp, 'MiB/s'],
  ['upload ratio storage/SDK', rows.upRatio, 'x'],
  ['SDK download (GetObject)', rows.sdkDown, 'MiB/s'],
  ['storage download', rows.sDown, 'MiB/s'],
  ['download ratio storage/SDK', rows.downRatio, 'x'],
  ['storage RSS idle', rows.idle, 'MiB'],
  [`storage peak RSS, ${SMALL_MIB} MiB object`, rows.smallPeak, 'MiB'],
  [`storage peak RSS, ${SIZE_MIB} MiB object`, rows.bigPeak, 'MiB'],
  [`storage peak RSS, ${SMALL_MIB} MiB object, after them`, rows.smallPeakAfter, 'MiB'],
  [`peak RSS ratio ${SIZE_MIB} / ${SMALL_MIB} MiB`, rows.rssRatio, 'x'],
]);
printTable('CPU seconds per GiB moved', [
  ['SDK upload: client', rows.sdkUpClientCpu, 's'],
  ['SDK upload: weed', rows.sdkUpWeedCpu, 's'],
  ['storage upload: client', rows.sUpClientCpu, 's'],
  ['storage upload: storage', rows.sUpStorageCpu, 's'],
  ['storage upload: weed', rows.sUpWeedCpu, 's'],
  ['SDK download: client', rows.sdkDownClientCpu, 's'],
  ['SDK download: weed', rows.sdkDownWeedCpu, 's'],
  ['storage download: client', rows.sDownClientCpu, 's'],
  ['storage download: storage', rows.sDownStorageCpu, 's'],
  ['storage download: weed', rows.sDownWeedCpu, 's'],
]);
await record('storage-s3', { size_mib: SIZE_MIB, small_mib: SMALL_MIB, runs: RUNS, ...summarizeAll(rows) });
headline(
  `storage on S3 upload ${summarize(rows.upRatio).median.toFixed(2)}x, download ${summarize(rows.downRatio).median.toFixed(2)}x of the AWS SDK straight to SeaweedFS (goal >= 0.9); peak RSS ${summarize(rows.bigPeak).median.toFixed(0)} MiB at ${SIZE_MIB} MiB vs ${summarize(rows.smallPeak).median.toFixed(0)} MiB at ${SMALL_MIB} MiB (${summarize(rows.rssRatio).median.toFixed(2)}x, flat ~1.0)`,
);

// open handles (sockets, the SDK's agents) must not keep a finished benchmark alive
process.exit(0);
