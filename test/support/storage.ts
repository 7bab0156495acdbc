/** The real storage service on a temp dir or on a bucket of a real S3 server (SeaweedFS), in-process, for tests. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { silentLogger } from '../../common/logger.js';
import { StorageClient } from '../../common/storage-client.js';
import { JobTokens } from '../../common/tokens.js';
import { type StorageServerConfig, startStorageServer, type StorageServer } from '../../storage/server.js';
import { type SeaweedFs, s3Client } from './seaweedfs.js';

export interface TestStorage extends StorageServer {
  dataDir: string;
  adminToken: string;
  tokenSecret: string;
  tokens: JobTokens;
  admin: StorageClient;
  /** Every file under the data dir with its size: to assert that a rejected request changed nothing. */
  snapshot(): Promise<Record<string, number>>;
}

export interface TestStorageOptions {
  dataDir?: string;
  maxArtifactBytes?: number;
  host?: string;
  /** Any other setting (quota, collection, timeouts). */
  config?: Partial<StorageServerConfig>;
  /** The s3 backend on this bucket (which must exist) of this server; snapshot() then lists the bucket. */
  s3?: { server: SeaweedFs; bucket: string; prefix?: string };
}

/** The settings that put storage on a SeaweedFS bucket. */
export function s3StorageConfig(s3: NonNullable<TestStorageOptions['s3']>): Partial<StorageServerConfig> {
  return {
    backend: 's3',
    s3Bucket: s3.bucket,
    s3Endpoint: s3.server.endpoint,
    s3Region: s3.server.region,
    s3Insecure: true,
    s3Prefix: s3.prefix ?? '',
    s3Credentials: { accessKeyId: s3.server.accessKeyId, secretAccessKey: s3.server.secretAccessKey },
    // the collector's window, short for tests (s3-backend.ts: grace must exceed twice the skew)
    gcGraceSeconds: 4,
    s3ClockSkewSeconds: 0.5,
  };
}

export async function startTestStorage(opts: TestStorageOptions = {}): Promise<TestStorage> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'pw-storage-')));
  // fixed through config to restart on the same data dir with the same credentials
  const adminToken = opts.config?.adminToken ?? randomBytes(24).toString('hex');
  const tokenSecret = opts.config?.tokenSecret ?? randomBytes(32).toString('hex');
  const server = await startStorageServer(
    {
      host: opts.host ?? '127.0.0.1',
      port: 0,
      dataDir,
      adminToken,
      tokenSecret,
      maxArtifactBytes: opts.maxArtifactBytes ?? 64 * 1024 * 1024,
      maxManifestBytes: 1024 * 1024,
      maxLogBytes: 1024 * 1024,
      ...(opts.s3 ? s3StorageConfig(opts.s3) : {}),
      ...opts.config,
    },
    silentLogger,
  );
  return {
    ...server,
    dataDir,
    adminToken,
    tokenSecret,
    tokens: new JobTokens(tokenSecret),
    admin: new StorageClient({ baseUrl: server.url, token: adminToken }),
    snapshot: () => (opts.s3 ? snapshotBucket(opts.s3) : snapshotDir(dataDir)),
    async close() {
      await server.close();
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export async function snapshotDir(root: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (!e.isFile()) continue;
    const full = join(e.parentPath, e.name);
    out[relative(root, full)] = (await stat(full)).size;
  }
  return out;
}

/** Every object in the bucket with its size. */
export async function snapshotBucket(s3: NonNullable<TestStorageOptions['s3']>): Promise<Record<string, number>> {
  const client = s3Client(s3.server, s3.server);
  const out: Record<string, number> = {};
  let token: string | undefined;
  try {
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, ...(token ? { ContinuationToken: token } : {}) }));
      for (const o of page.Contents ?? []) if (o.Key) out[o.Key] = o.Size ?? 0;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  } finally {
    client.destroy();
  }
  return out;
}
