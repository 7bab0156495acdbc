import { z } from 'zod';
import { type ConfigOf, env, logLevel, port, positiveInt } from '../common/config.js';
import { MIN_SECRET_BYTES } from '../common/tokens.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

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
  logLevel: env('LOG_LEVEL', logLevel()),
};
export type StorageConfig = ConfigOf<typeof storageConfigSpec>;
