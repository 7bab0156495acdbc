import { z } from 'zod';
import { DEFAULT_ARCHIVE_LIMITS } from '../common/archive-rules.js';
import { type ConfigOf, bool, env, httpUrl, logLevel, port, positiveInt } from '../common/config.js';
import { MIN_SECRET_BYTES } from '../common/tokens.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/**
 * Defaults of the settings startStorageServer() also accepts without them (the local CLI and
 * tests pass a config object, not the environment).
 */
export const STORAGE_DEFAULTS = {
  /**
   * A job's output.tar.gz, manifest.json and log together. The runner refuses an output that
   * unpacks to more than 512 MiB, so its tar.gz is about that at most; with the 16 MiB manifest
   * and 64 MiB log limits, 1 GiB leaves room and still bounds what one job can make storage hold.
   */
  maxJobBytes: 1 * GiB,
  /** The same limits as the runners' unpack, so storage publishes only what the next job can unpack. */
  maxArchiveEntries: DEFAULT_ARCHIVE_LIMITS.maxEntries,
  maxUnpackedBytes: DEFAULT_ARCHIVE_LIMITS.maxBytes,
  gcIntervalSeconds: 600,
  /** An upload's blob exists a moment before the record that references it (gc.ts). */
  gcGraceSeconds: 3600,
  headersTimeoutSeconds: 30,
  /** The largest artifact (2 GiB) at about 600 KiB/s. */
  requestTimeoutSeconds: 3600,
  keepAliveTimeoutSeconds: 5,
  /** No byte either way for this long closes the connection (also mid-upload). */
  idleTimeoutSeconds: 120,
  backend: 'fs' as 'fs' | 's3',
  s3Region: 'us-east-1',
  s3Prefix: '',
  s3Insecure: false,
  /** How far apart two replicas' clocks may be: the s3 collector's margin (s3-backend.ts). */
  s3ClockSkewSeconds: 60,
};

const seconds = (fallback: number) => z.coerce.number().positive().default(fallback);
const secondsOrZero = (fallback: number) => z.coerce.number().min(0).default(fallback);

export const storageConfigSpec = {
  host: env('STORAGE_HOST', z.string().default('0.0.0.0')),
  port: env('STORAGE_PORT', port(8080)),
  dataDir: env('STORAGE_DIR', z.string().min(1).default('/data')),
  adminToken: env('STORAGE_ADMIN_TOKEN', z.string().min(16, 'must be at least 16 characters'), { secret: true }),
  tokenSecret: env('TOKEN_SECRET', z.string().min(MIN_SECRET_BYTES, `must be at least ${MIN_SECRET_BYTES} characters`), {
    secret: true,
  }),
  maxArtifactBytes: env('STORAGE_MAX_ARTIFACT_BYTES', positiveInt(2 * GiB)),
  maxManifestBytes: env('STORAGE_MAX_MANIFEST_BYTES', positiveInt(16 * MiB)),
  maxLogBytes: env('STORAGE_MAX_LOG_BYTES', positiveInt(64 * MiB)),
  maxJobBytes: env('STORAGE_MAX_JOB_BYTES', positiveInt(STORAGE_DEFAULTS.maxJobBytes)),
  // the runner's variables: one value for the whole cluster, read by both
  maxArchiveEntries: env('MAX_ARCHIVE_ENTRIES', positiveInt(STORAGE_DEFAULTS.maxArchiveEntries)),
  maxUnpackedBytes: env('MAX_UNPACKED_BYTES', positiveInt(STORAGE_DEFAULTS.maxUnpackedBytes)),
  gcIntervalSeconds: env('STORAGE_GC_INTERVAL_SECONDS', secondsOrZero(STORAGE_DEFAULTS.gcIntervalSeconds)),
  gcGraceSeconds: env('STORAGE_GC_GRACE_SECONDS', secondsOrZero(STORAGE_DEFAULTS.gcGraceSeconds)),
  headersTimeoutSeconds: env('STORAGE_HEADERS_TIMEOUT_SECONDS', seconds(STORAGE_DEFAULTS.headersTimeoutSeconds)),
  requestTimeoutSeconds: env('STORAGE_REQUEST_TIMEOUT_SECONDS', seconds(STORAGE_DEFAULTS.requestTimeoutSeconds)),
  keepAliveTimeoutSeconds: env('STORAGE_KEEP_ALIVE_TIMEOUT_SECONDS', seconds(STORAGE_DEFAULTS.keepAliveTimeoutSeconds)),
  idleTimeoutSeconds: env('STORAGE_IDLE_TIMEOUT_SECONDS', seconds(STORAGE_DEFAULTS.idleTimeoutSeconds)),
  backend: env('STORAGE_BACKEND', z.enum(['fs', 's3']).default(STORAGE_DEFAULTS.backend)),
  s3Bucket: env('S3_BUCKET', z.string().min(3).max(63).optional()),
  s3Endpoint: env('S3_ENDPOINT', httpUrl().optional()),
  s3Region: env('S3_REGION', z.string().min(1).default(STORAGE_DEFAULTS.s3Region)),
  s3Prefix: env(
    'S3_PREFIX',
    z
      .string()
      .regex(/^[A-Za-z0-9!_.*'()/-]*$/, "must be a key prefix of letters, digits and !_.*'()/-")
      .default(STORAGE_DEFAULTS.s3Prefix)
      // one directory-like prefix: "a/b" and "a/b/" both mean a/b/
      .transform((p) => (p === '' || p.endsWith('/') ? p : `${p}/`)),
  ),
  // unset: path style exactly when an endpoint is set (self-hosted servers rarely have wildcard DNS)
  s3ForcePathStyle: env(
    'S3_FORCE_PATH_STYLE',
    z
      .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
      .optional()
      .transform((v) => (v === undefined ? undefined : v === 'true' || v === '1')),
  ),
  s3Insecure: env('S3_INSECURE', bool(STORAGE_DEFAULTS.s3Insecure)),
  s3CaFile: env('S3_CA_FILE', z.string().min(1).optional()),
  s3ClockSkewSeconds: env('S3_CLOCK_SKEW_SECONDS', secondsOrZero(STORAGE_DEFAULTS.s3ClockSkewSeconds)),
  logLevel: env('LOG_LEVEL', logLevel()),
};
export type StorageConfig = ConfigOf<typeof storageConfigSpec>;
