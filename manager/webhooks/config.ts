/**
 * The manager's webhook settings (README "Configuration"), in common/config.ts style: the
 * manager's config spec spreads this in, and loadWebhookSettings turns the values into what
 * delivery.ts and outbox.ts take. The cluster's Service and pod ranges are CLUSTER_ settings,
 * not WEBHOOK_ ones: they are facts about the cluster that any other outbound URL of a user
 * (git sources, publish targets) is checked against too.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { type ConfigOf, ConfigError, bool, env } from '../../common/config.js';
import { InvalidCidrError, type NetworkPolicyConfig, parseCidr } from './url-policy.js';

const seconds = (fallback: number) => z.coerce.number().positive().default(fallback);

/** Comma-separated CIDRs (or single addresses), each checked with url-policy's parser. */
export const cidrs = () =>
  z
    .string()
    .transform((s, ctx) => {
      const out: string[] = [];
      for (const item of s
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean)) {
        try {
          parseCidr(item);
          out.push(item);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: err instanceof InvalidCidrError ? err.message : String(err) });
          return z.NEVER;
        }
      }
      return out;
    })
    .default([]);

export const webhookConfigSpec = {
  /** http: webhook URLs too (in-cluster receivers without TLS). */
  webhookAllowHttp: env('WEBHOOK_ALLOW_HTTP', bool(false)),
  /** Addresses webhooks may reach although they are loopback, link-local, private or the cluster's. */
  webhookAllowedCidrs: env('WEBHOOK_ALLOWED_CIDRS', cidrs()),
  /** PEM bundle trusted besides node's and the system's CAs (private receivers). */
  webhookCaFile: env('WEBHOOK_CA_FILE', z.string().min(1).optional()),
  webhookTimeoutSeconds: env('WEBHOOK_TIMEOUT_SECONDS', seconds(15)),
  webhookMaxAttempts: env('WEBHOOK_MAX_ATTEMPTS', z.coerce.number().int().min(1).max(100).default(10)),
  webhookBackoffBaseSeconds: env('WEBHOOK_BACKOFF_BASE_SECONDS', seconds(10)),
  /** The cluster's Service ranges (kube-apiserver --service-cluster-ip-range), both families. */
  clusterServiceCidrs: env('CLUSTER_SERVICE_CIDRS', cidrs()),
  /** The cluster's pod ranges (kube-controller-manager --cluster-cidr), both families. */
  clusterPodCidrs: env('CLUSTER_POD_CIDRS', cidrs()),
};
export type WebhookConfig = ConfigOf<typeof webhookConfigSpec>;

export interface WebhookSettings {
  network: NetworkPolicyConfig;
  timeoutMs: number;
  extraCa: string[];
  /** outbox.ts's RetryPolicy. */
  retry: { maxAttempts: number; baseBackoffMs: number };
}

/** Reads the CA file (at start-up: a missing file stops the manager, as a bad variable does). */
export function loadWebhookSettings(
  config: WebhookConfig,
  readFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): WebhookSettings {
  return {
    network: {
      allowHttp: config.webhookAllowHttp,
      allowedCidrs: config.webhookAllowedCidrs,
      serviceCidrs: config.clusterServiceCidrs,
      podCidrs: config.clusterPodCidrs,
    },
    timeoutMs: config.webhookTimeoutSeconds * 1000,
    extraCa: config.webhookCaFile ? [readCa(config.webhookCaFile, readFile)] : [],
    retry: { maxAttempts: config.webhookMaxAttempts, baseBackoffMs: config.webhookBackoffBaseSeconds * 1000 },
  };
}

function readCa(path: string, readFile: (path: string) => string): string {
  let pem: string;
  try {
    pem = readFile(path);
  } catch (err) {
    throw new ConfigError([`PAGEWRIGHT_WEBHOOK_CA_FILE: cannot read ${path}: ${(err as Error).message}`]);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError([`PAGEWRIGHT_WEBHOOK_CA_FILE: ${path} holds no PEM certificate`]);
  return pem;
}
