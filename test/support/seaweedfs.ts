/**
 * A real S3 server for tests: SeaweedFS's `weed mini` (master, volume server, filer and S3 gateway
 * in one process), built from its pinned Go module by seaweedfs/build.sh and cached outside the
 * repo. It listens on loopback only, on free ports picked here (every port, gRPC ones included:
 * mini's defaults are fixed ports such as 8333 and 9333, which two parallel runs would fight
 * over), keeps its data in a fresh temp directory, and accepts one random access key, which it
 * reads from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY. Telemetry, WebDAV, the admin UI and the
 * Iceberg/Lance catalogs are off: the tests need only S3.
 *
 * Why SeaweedFS and not MinIO: MinIO is archived upstream and AGPL; SeaweedFS is Apache-2.0 and
 * its conditional writes (If-None-Match: *, If-Match) hold at this version, which
 * test/integration/seaweedfs.test.ts pins. Why not a fake: the storage backend's correctness rests
 * on the server's answers (412 on a lost race), which only the real server gives.
 *
 * stop() kills it and removes its directory; a test process that exits or is interrupted first
 * kills it on the way out, and one that was SIGKILLed leaves it for the next start (here or of a
 * control plane) to reap: it carries this process as its owner (control-plane/owner.ts), whose
 * "pid:starttime" also names its temp directory, which the next start here removes.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { OWNER_ENV, isOwnerAlive, onTermination, reapOrphans, selfOwner } from './control-plane/owner.js';
import { getFreePort } from './ports.js';
import { terminate, waitFor } from './processes.js';
import { REPO_ROOT } from './sites.js';

const run = promisify(execFile);

export interface SeaweedFs {
  /** http://127.0.0.1:PORT, the S3 API (path-style buckets) */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** Kills weed (SIGKILL: no flush) and starts it again on the same data and ports; resolves once it answers. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** The cached `weed` (seaweedfs/build.sh builds it on first use: ~10 min cold, instant warm). */
async function ensureWeed(): Promise<string> {
  const { stdout } = await run(join(REPO_ROOT, 'test/support/seaweedfs/build.sh'), { maxBuffer: 64 * 1024 * 1024 });
  const weed = stdout.trim().split('\n').at(-1);
  if (!weed) throw new Error('seaweedfs/build.sh printed no path');
  return weed;
}

/** An S3 client for this server as storage's backend will configure one. */
export function s3Client(
  s: Pick<SeaweedFs, 'endpoint' | 'region'>,
  credentials: { accessKeyId: string; secretAccessKey: string },
  maxAttempts = 3,
): S3Client {
  return new S3Client({
    endpoint: s.endpoint,
    region: s.region,
    credentials,
    forcePathStyle: true,
    // the SDK's default CRC checksums (since 2025) are not what S3-compatible servers expect
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts,
  });
}

export async function startSeaweedFs(): Promise<SeaweedFs> {
  const weed = await ensureWeed();
  // what a SIGKILLed run left: its weed, then its directory
  reapOrphans();
  for (const d of await readdir(tmpdir())) {
    const owner = /^pagewright-seaweedfs-(\d+)-(\d+)-/.exec(d);
    if (owner && !isOwnerAlive(`${owner[1]}:${owner[2]}`)) await rm(join(tmpdir(), d), { recursive: true, force: true });
  }
  const owner = selfOwner();
  const dir = await mkdtemp(join(tmpdir(), `pagewright-seaweedfs-${owner.replace(':', '-')}-`));
  const accessKeyId = `PW${randomBytes(9).toString('hex').toUpperCase()}`;
  const secretAccessKey = randomBytes(24).toString('base64url');
  const region = 'us-east-1';
  const port: Record<string, number> = {};
  for (const name of [
    'master',
    'masterGrpc',
    'volume',
    'volumeGrpc',
    'filer',
    'filerGrpc',
    's3',
    's3Grpc',
    'admin',
    'adminGrpc',
    'webdav',
  ]) {
    port[name] = await getFreePort();
  }
  const args = [
    'mini',
    `-dir=${join(dir, 'data')}`,
    '-ip=127.0.0.1',
    '-ip.bind=127.0.0.1',
    `-master.port=${port.master}`,
    `-master.port.grpc=${port.masterGrpc}`,
    '-master.telemetry=false',
    `-volume.port=${port.volume}`,
    `-volume.port.grpc=${port.volumeGrpc}`,
    `-filer.port=${port.filer}`,
    `-filer.port.grpc=${port.filerGrpc}`,
    `-filer.localSocket=${join(dir, 'filer.sock')}`,
    `-s3.port=${port.s3}`,
    `-s3.port.grpc=${port.s3Grpc}`,
    `-s3.localSocket=${join(dir, 's3.sock')}`,
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    '-webdav=false',
    `-webdav.port=${port.webdav}`,
    '-admin.ui=false',
    `-admin.port=${port.admin}`,
    `-admin.port.grpc=${port.adminGrpc}`,
    '-admin.port.legacy=0',
  ];
  const spawnWeed = (): ChildProcess => {
    const log = openSync(join(dir, 'weed.log'), 'a');
    const proc = spawn(weed, args, {
      cwd: dir,
      stdio: ['ignore', log, log],
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        TMPDIR: dir,
        [OWNER_ENV]: owner,
        AWS_ACCESS_KEY_ID: accessKeyId,
        AWS_SECRET_ACCESS_KEY: secretAccessKey,
      },
    });
    closeSync(log); // the child holds its own copy
    return proc;
  };
  let child = spawnWeed();
  // only this child: the same owner may also hold the shared control plane, which must survive
  const unregister = onTermination(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const stop = async () => {
    await terminate(child);
    await rm(dir, { recursive: true, force: true });
    unregister();
  };
  const endpoint = `http://127.0.0.1:${port.s3}`;
  const ready = async () => {
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
    });
    const probe = s3Client({ endpoint, region }, { accessKeyId, secretAccessKey }, 1);
    try {
      // ready when a signed request is answered: the gateway is up and knows the key
      await waitFor(
        'weed mini to answer a signed S3 ListBuckets',
        async () => {
          if (spawnError) throw new Error(`weed mini did not start: ${spawnError.message}`);
          if (child.exitCode !== null || child.signalCode !== null)
            throw new Error(`weed mini exited (${child.exitCode ?? child.signalCode})`);
          return probe.send(new ListBucketsCommand({})).then(
            () => true,
            () => false,
          );
        },
        60_000,
        100,
      );
    } catch (err) {
      const tail = readFileSync(join(dir, 'weed.log'), 'utf8').slice(-3000);
      await stop();
      throw new Error(`SeaweedFS failed to start: ${(err as Error).message}\n--- weed.log\n${tail}`);
    } finally {
      probe.destroy();
    }
  };
  const restart = async () => {
    child.kill('SIGKILL');
    await terminate(child);
    child = spawnWeed();
    await ready();
  };
  const server = { endpoint, accessKeyId, secretAccessKey, region, restart, stop };
  await ready();
  return server;
}
