/**
 * Picks and opens the backend the config names (backend.ts): `fs` on the data directory, or
 * `s3` on a bucket, after checking the settings that only make sense together and proving the
 * server's conditional writes (s3-backend.ts).
 */
import { ConfigError } from '../common/config.js';
import type { BlobBackend, RecordBackend } from './backend.js';
import { BlobStore } from './blob-store.js';
import type { StorageConfig } from './config.js';
import { FsRecords } from './fs-records.js';
import { S3Backend, type S3BackendConfig } from './s3-backend.js';

export interface OpenBackend {
  blobs: BlobBackend;
  records: RecordBackend;
  /** Where it is, for the start-up log line. */
  describe: string;
  close(): Promise<void>;
}

type BackendSettings = Pick<
  StorageConfig,
  | 'backend'
  | 'dataDir'
  | 'gcGraceSeconds'
  | 's3Bucket'
  | 's3Endpoint'
  | 's3Region'
  | 's3Prefix'
  | 's3ForcePathStyle'
  | 's3Insecure'
  | 's3CaFile'
  | 's3ClockSkewSeconds'
> & {
  /** Explicit S3 credentials (tests, embedded use); unset: the SDK's default chain (AWS_* env, web identity, instance roles). */
  s3Credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
};

export async function openBackend(config: BackendSettings): Promise<OpenBackend> {
  if (config.backend === 's3') {
    const s3 = new S3Backend(s3Settings(config), config.gcGraceSeconds);
    await s3.init();
    return {
      blobs: s3.blobs,
      records: s3.records,
      describe: `s3://${config.s3Bucket}/${config.s3Prefix} at ${config.s3Endpoint ?? `AWS ${config.s3Region}`}`,
      close: () => s3.close(),
    };
  }
  const blobs = new BlobStore(config.dataDir);
  await blobs.init();
  return { blobs, records: new FsRecords(config.dataDir, blobs.tmpDir), describe: config.dataDir, close: () => blobs.close() };
}

/** The s3 settings, or every problem with them at once (as loadConfig reports variables). */
export function s3Settings(config: BackendSettings): S3BackendConfig {
  const problems: string[] = [];
  if (!config.s3Bucket) problems.push('PAGEWRIGHT_S3_BUCKET: is required with PAGEWRIGHT_STORAGE_BACKEND=s3');
  if (config.s3Endpoint?.startsWith('http://') && !config.s3Insecure) {
    problems.push('PAGEWRIGHT_S3_ENDPOINT: is plain http; set PAGEWRIGHT_S3_INSECURE=true to send credentials and data unencrypted');
  }
  if (config.s3CaFile && !config.s3Endpoint?.startsWith('https://')) {
    problems.push('PAGEWRIGHT_S3_CA_FILE: applies to an https PAGEWRIGHT_S3_ENDPOINT only');
  }
  if (config.gcGraceSeconds <= 2 * config.s3ClockSkewSeconds) {
    problems.push(
      `PAGEWRIGHT_STORAGE_GC_GRACE_SECONDS: must be more than twice PAGEWRIGHT_S3_CLOCK_SKEW_SECONDS (${config.s3ClockSkewSeconds}) with the s3 backend`,
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    bucket: config.s3Bucket as string,
    endpoint: config.s3Endpoint,
    region: config.s3Region,
    prefix: config.s3Prefix,
    forcePathStyle: config.s3ForcePathStyle ?? config.s3Endpoint !== undefined,
    caFile: config.s3CaFile,
    clockSkewSeconds: config.s3ClockSkewSeconds,
    credentials: config.s3Credentials,
  };
}
