/**
 * The manager's settings for what sites reach outside the cluster (README "Sites from git and
 * to buckets"): git sources and publish targets. Their URLs are judged like webhooks' (the same
 * url-policy.ts, the same CLUSTER_ ranges) but allowed separately: an operator who lets webhooks
 * reach an in-cluster receiver has not said git may fetch from there.
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { z } from 'zod';
import { DEFAULT_ARCHIVE_LIMITS } from '../../common/archive-rules.js';
import { type ConfigOf, ConfigError, bool, env } from '../../common/config.js';
import { cidrs } from '../webhooks/config.js';
import type { NetworkPolicyConfig } from '../webhooks/url-policy.js';
import type { GitClientOptions } from './git-client.js';

export const siteSyncConfigSpec = {
  /** http: git URLs and bucket endpoints too (in-cluster servers without TLS). */
  siteAllowHttp: env('SITE_ALLOW_HTTP', bool(false)),
  /** Addresses git sources, git targets and bucket endpoints may reach although loopback, link-local, private or the cluster's. */
  siteAllowedCidrs: env('SITE_ALLOWED_CIDRS', cidrs()),
  /** PEM bundle git trusts instead of the system's (a private git server). */
  siteCaFile: env('SITE_CA_FILE', z.string().min(1).optional()),
  gitTimeoutSeconds: env('GIT_TIMEOUT_SECONDS', z.coerce.number().positive().default(120)),
  /** The most one fetch (at depth 1) may bring. */
  gitMaxFetchBytes: env(
    'GIT_MAX_FETCH_BYTES',
    z.coerce
      .number()
      .int()
      .positive()
      .default(1024 * 1024 * 1024),
  ),
  /** Where imports and exports are made (and removed after each). */
  siteScratchDir: env('SITE_SCRATCH_DIR', z.string().min(1).default(tmpdir())),
  siteExportBackoffSeconds: env('SITE_EXPORT_BACKOFF_SECONDS', z.coerce.number().positive().default(10)),
};
type SiteSyncConfig = ConfigOf<typeof siteSyncConfigSpec> & { clusterServiceCidrs: string[]; clusterPodCidrs: string[] };

export function siteNetworkPolicy(config: SiteSyncConfig): NetworkPolicyConfig {
  return {
    allowHttp: config.siteAllowHttp,
    allowedCidrs: config.siteAllowedCidrs,
    serviceCidrs: config.clusterServiceCidrs,
    podCidrs: config.clusterPodCidrs,
    settingPrefix: 'PAGEWRIGHT_SITE',
  };
}

/** The git client's options, but the policy (main.ts compiles one for git and buckets alike). */
export function gitClientSettings(
  config: SiteSyncConfig,
  exists: (path: string) => boolean = (p) => {
    try {
      readFileSync(p);
      return true;
    } catch {
      return false;
    }
  },
): Omit<GitClientOptions, 'policy'> {
  if (config.siteCaFile && !exists(config.siteCaFile)) throw new ConfigError([`PAGEWRIGHT_SITE_CA_FILE: cannot read ${config.siteCaFile}`]);
  return {
    scratchDir: config.siteScratchDir,
    timeoutMs: config.gitTimeoutSeconds * 1000,
    maxFetchBytes: config.gitMaxFetchBytes,
    // what a runner's unpack takes by default: a tree larger than that could not become a job's base
    limits: DEFAULT_ARCHIVE_LIMITS,
    ...(config.siteCaFile ? { caFile: config.siteCaFile } : {}),
  };
}
