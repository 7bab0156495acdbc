/**
 * Storage throughput: 1 GiB up and down through the storage service (auth, sha256, temp file,
 * fsync, rename, content-addressed refs) vs. a minimal Node http server that streams the same
 * bytes to and from disk. Headline: storage / baseline throughput (goal >= 0.8) and the
 * storage process's RSS during the transfer (must stay flat).
 *
 *   make bench-storage        (BENCH_RUNS=5, BENCH_STORAGE_MIB=1024)
 */
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { request } from 'undici';
import { RUNS, alternating, headline, printTable, record, sampleRss, sized, summarize, summarizeAll, timed } from './lib.js';
import { type ChildService, startRawDiskServer, startStorageChild } from './support/services.js';

const MIB = 1024 * 1024;
const SIZE_MIB = sized('BENCH_STORAGE_MIB', 1024, 8);
const chunk = randomBytes(MIB);

function source(): Readable {
  let left = SIZE_MIB;
  return new Readable({
    read() {
      this.push(left-- > 0 ? chunk : null);
    },
  });
}

async function upload(url: string, headers: Record<string, string>): Promise<void> {
  const res = await request(url, { method: 'PUT', body: source(), headers: { 'content-length': String(SIZE_MIB * MIB), ...headers } });
  const text = await res.body.text();
  if (res.statusCode !== 201) throw new Error(`PUT ${url}: ${res.statusCode} ${text}`);
}

async function download(url: string, headers: Record<string, string>): Promise<void> {
  const res = await request(url, { headers });
  if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode}`);
  let bytes = 0;
  await pipeline(
    res.body,
    new Writable({
      write(c: Buffer, _e, cb) {
        bytes += c.length;
        cb();
      },
    }),
  );
  if (bytes !== SIZE_MIB * MIB) throw new Error(`GET ${url}: ${bytes} bytes`);
}

async function measure(svc: ChildService, put: string, get: string, headers: Record<string, string>) {
  const idle = summarize(
    await (async () => {
      const s = sampleRss(svc.pid, 20);
      await new Promise((r) => setTimeout(r, 200));
      return s.stop();
    })(),
  ).median;
  const upRss = sampleRss(svc.pid);
  const up = await timed(() => upload(svc.url + put, headers));
  const upSamples = upRss.stop();
  const downRss = sampleRss(svc.pid);
  const down = await timed(() => download(svc.url + get, headers));
  const downSamples = downRss.stop();
  return {
    upMiBs: SIZE_MIB / (up.ms / 1000),
    downMiBs: SIZE_MIB / (down.ms / 1000),
    idleRss: idle,
    peakRssGrowth: Math.max(...upSamples, ...downSamples) - idle,
  };
}

const storage = await startStorageChild();
const raw = await startRawDiskServer();
const auth = { authorization: `Bearer ${storage.adminToken}` };
const rows = {
  sUp: [] as number[],
  sDown: [] as number[],
  bUp: [] as number[],
  bDown: [] as number[],
  upRatio: [] as number[],
  downRatio: [] as number[],
  rssGrowth: [] as number[],
  idle: [] as number[],
};
try {
  for (let run = 0; run < RUNS; run++) {
    const [base, s] = await alternating(
      run,
      () => measure(raw, '/object', '/object', {}),
      () => measure(storage, '/sites/bench/artifact', '/sites/bench/artifact', auth),
    );
    rows.bUp.push(base.upMiBs);
    rows.bDown.push(base.downMiBs);
    rows.sUp.push(s.upMiBs);
    rows.sDown.push(s.downMiBs);
    rows.upRatio.push(s.upMiBs / base.upMiBs);
    rows.downRatio.push(s.downMiBs / base.downMiBs);
    rows.rssGrowth.push(s.peakRssGrowth);
    rows.idle.push(s.idleRss);
  }
} finally {
  await storage.stop();
  await raw.stop();
}
printTable(`storage throughput, ${SIZE_MIB} MiB objects`, [
  ['baseline upload (raw http + fsync)', rows.bUp, 'MiB/s'],
  ['storage upload', rows.sUp, 'MiB/s'],
  ['upload ratio storage/baseline', rows.upRatio, 'x'],
  ['baseline download', rows.bDown, 'MiB/s'],
  ['storage download', rows.sDown, 'MiB/s'],
  ['download ratio storage/baseline', rows.downRatio, 'x'],
  ['storage RSS idle', rows.idle, 'MiB'],
  ['storage RSS growth during transfer', rows.rssGrowth, 'MiB'],
]);
await record('storage-throughput', { size_mib: SIZE_MIB, runs: RUNS, ...summarizeAll(rows) });
headline(
  `storage upload ${summarize(rows.upRatio).median.toFixed(2)}x, download ${summarize(rows.downRatio).median.toFixed(2)}x of the raw-disk baseline (goal >= 0.8); RSS growth ${summarize(rows.rssGrowth).median.toFixed(0)} MiB over ${SIZE_MIB} MiB`,
);

// open handles (watches, agents) must not keep a finished benchmark alive
process.exit(0);
