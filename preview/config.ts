/** The preview service's PAGEWRIGHT_* environment, validated once at start-up (README "Configuration"). */
import { z } from 'zod';
import { DEFAULT_ARCHIVE_LIMITS } from '../common/archive-rules.js';
import { env, httpUrl, logLevel, port, positiveInt } from '../common/config.js';
import { MIN_SECRET_BYTES } from '../common/tokens.js';

const GiB = 1024 ** 3;

export const previewConfigSpec = {
  /** The public listener: signed links (`/p/<token>/...`) and GET /healthz. */
  port: env('PREVIEW_PORT', port(8084)),
  host: env('PREVIEW_HOST', z.string().default('0.0.0.0')),
  /**
   * The API routes (jobs/…, sites/…) on 127.0.0.1 only, until the aggregated API serves them
   * behind the apiserver's authentication: whoever reaches this port sees every namespace.
   */
  localApiPort: env('PREVIEW_LOCAL_API_PORT', port(8088)),
  cacheDir: env('PREVIEW_CACHE_DIR', z.string().min(1).default('/cache')),
  cacheBytes: env('PREVIEW_CACHE_BYTES', positiveInt(2 * GiB)),
  /** Signs and verifies preview links (the manager's must be the same); unset: no signed links. */
  linkSecret: env('PREVIEW_LINK_SECRET', z.string().min(MIN_SECRET_BYTES, `must be at least ${MIN_SECRET_BYTES} characters`).optional(), {
    secret: true,
  }),
  /** Where the Ingress publishes this service (links are built under it); unset: no links are issued. */
  baseUrl: env('PREVIEW_BASE_URL', httpUrl().optional()),
  linkTtlSeconds: env('PREVIEW_LINK_TTL_SECONDS', positiveInt(24 * 3600)),
  storageUrl: env('STORAGE_URL', httpUrl()),
  storageToken: env('STORAGE_ADMIN_TOKEN', z.string().min(16, 'must be at least 16 characters'), { secret: true }),
  // the runners' unpack limits: what a version may extract to (keep them equal everywhere)
  maxArchiveEntries: env('MAX_ARCHIVE_ENTRIES', positiveInt(DEFAULT_ARCHIVE_LIMITS.maxEntries)),
  maxUnpackedBytes: env('MAX_UNPACKED_BYTES', positiveInt(DEFAULT_ARCHIVE_LIMITS.maxBytes)),
  logLevel: env('LOG_LEVEL', logLevel()),
};
