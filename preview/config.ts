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
   * The review API (review.pagewright.dev, an aggregated API: the kube-apiserver is its only
   * client, over TLS with its front-proxy certificate): pushes, pulls, rollbacks, diffs, previews
   * and review pages for users of the cluster.
   */
  apiPort: env('PREVIEW_API_PORT', port(8443)),
  /** The review API's serving certificate and key (the Secret deploy/apply.sh makes; the APIService trusts its CA). */
  tlsCertFile: env('PREVIEW_TLS_CERT_FILE', z.string().min(1).default('/tls/tls.crt')),
  tlsKeyFile: env('PREVIEW_TLS_KEY_FILE', z.string().min(1).default('/tls/tls.key')),
  /** The largest site archive a push may send (storage's own limit should be at least this). */
  maxPushBytes: env('PREVIEW_MAX_PUSH_BYTES', positiveInt(256 * 1024 * 1024)),
  /** Where pushes are spooled while they are checked. */
  scratchDir: env('PREVIEW_SCRATCH_DIR', z.string().min(1).default('/scratch')),
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
