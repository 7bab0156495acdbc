/** The manager's PAGEWRIGHT_* environment, validated once at start-up (README "Configuration"). */
import { z } from 'zod';
import { siteSyncConfigSpec } from './sites/config.js';
import { webhookConfigSpec } from './webhooks/config.js';
import { type ConfigOf, bool, env, httpUrl, json, list, logLevel, port, positiveInt } from '../common/config.js';
import { DEFAULT_BUDGET, DEFAULT_MODEL } from '../common/models.js';
import { MIN_SECRET_BYTES } from '../common/tokens.js';

const seconds = (fallback: number) => z.coerce.number().positive().default(fallback);
const quantity = (fallback: string) =>
  z
    .string()
    .regex(/^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$/, 'must be a Kubernetes quantity')
    .default(fallback);

export const managerConfigSpec = {
  port: env('MANAGER_PORT', port(8081)),
  host: env('MANAGER_HOST', z.string().default('0.0.0.0')),
  /** Empty: every namespace (needs a ClusterRole); else only this one. */
  watchNamespace: env('WATCH_NAMESPACE', z.string().optional()),
  maxConcurrentJobs: env('MAX_CONCURRENT_JOBS', positiveInt(10)),
  workers: env('WORKERS', positiveInt(4)),
  runnerImage: env('RUNNER_IMAGE', z.string().min(1).default('pagewright-runner:0.1.0')),
  runnerImagePullPolicy: env('RUNNER_IMAGE_PULL_POLICY', z.enum(['Always', 'IfNotPresent', 'Never']).default('IfNotPresent')),
  runnerPort: env('RUNNER_PORT', port(8082)),
  runnerCpuRequest: env('RUNNER_CPU_REQUEST', quantity('250m')),
  runnerCpuLimit: env('RUNNER_CPU_LIMIT', quantity('2')),
  /** The agent container's memory for codex and its tools; the pod adds its memory-backed volumes on top (pod-spec.ts). */
  runnerMemoryRequest: env('RUNNER_MEMORY_REQUEST', quantity('512Mi')),
  runnerMemoryLimit: env('RUNNER_MEMORY_LIMIT', quantity('2Gi')),
  /**
   * The work dir (/work: the site, codex's home): a tmpfs of this size, so a write past it fails
   * at once (ENOSPC). Its pages are memory, charged to the container that writes them.
   */
  runnerWorkSizeLimit: env('RUNNER_WORK_SIZE_LIMIT', quantity('1Gi')),
  /** The largest file an agent process may write (RLIMIT_FSIZE): what it can put on the node's disk through /dev/termination-log. */
  runnerMaxFileSize: env('RUNNER_MAX_FILE_SIZE', quantity('512Mi')),
  /** Extra env for runner containers, as a JSON object of strings (e.g. codex retry counts). */
  runnerEnv: env('RUNNER_ENV', json(z.record(z.string().regex(/^[A-Z_][A-Z0-9_]*$/), z.string())).default({})),
  /** Pods are scheduled by this scheduler (tests use their local kubelet's name). */
  runnerSchedulerName: env('RUNNER_SCHEDULER_NAME', z.string().optional()),
  /** Added to timeoutSeconds for activeDeadlineSeconds: time to pack, upload and call back. */
  podDeadlineSlackSeconds: env('POD_DEADLINE_SLACK_SECONDS', z.coerce.number().int().min(0).default(120)),
  /** How runners reach this manager (the manager Service). */
  managerUrl: env('MANAGER_URL', httpUrl()),
  storageUrl: env('STORAGE_URL', httpUrl()),
  storageAdminToken: env('STORAGE_ADMIN_TOKEN', z.string().min(16, 'must be at least 16 characters'), { secret: true }),
  tokenSecret: env('TOKEN_SECRET', z.string().min(MIN_SECRET_BYTES, `must be at least ${MIN_SECRET_BYTES} characters`), { secret: true }),
  /** The model gateway, as runners reach it (its Service); they never get the LLM key itself. */
  gatewayUrl: env('GATEWAY_URL', httpUrl()),
  /** Signs the per-attempt gateway credentials (the gateway verifies them with the same key). */
  gatewaySecret: env('GATEWAY_SECRET', z.string().min(MIN_SECRET_BYTES, `must be at least ${MIN_SECRET_BYTES} characters`), {
    secret: true,
  }),
  /** The bearer token the gateway sends with usage reports (POST /jobs/{id}/usage). */
  gatewayReportToken: env('GATEWAY_REPORT_TOKEN', z.string().min(16, 'must be at least 16 characters'), { secret: true }),
  codexModel: env('CODEX_MODEL', z.string().min(1).default(DEFAULT_MODEL)),
  /** Models a job may name (spec.model); default: only the default model. */
  modelAllowlist: env('MODEL_ALLOWLIST', list().optional()),
  /** A job's model budget when spec.budget leaves a limit unset, and the most it may ask for. */
  budgetDefaultRequests: env('BUDGET_DEFAULT_REQUESTS', positiveInt(DEFAULT_BUDGET.maxRequests)),
  budgetDefaultInputTokens: env('BUDGET_DEFAULT_INPUT_TOKENS', positiveInt(DEFAULT_BUDGET.maxInputTokens)),
  budgetDefaultOutputTokens: env('BUDGET_DEFAULT_OUTPUT_TOKENS', positiveInt(DEFAULT_BUDGET.maxOutputTokens)),
  budgetMaxRequests: env('BUDGET_MAX_REQUESTS', positiveInt(2000)),
  budgetMaxInputTokens: env('BUDGET_MAX_INPUT_TOKENS', positiveInt(100_000_000)),
  budgetMaxOutputTokens: env('BUDGET_MAX_OUTPUT_TOKENS', positiveInt(5_000_000)),
  resyncSeconds: env('RESYNC_SECONDS', seconds(300)),
  retryBaseSeconds: env('RETRY_BASE_SECONDS', seconds(10)),
  retryMaxSeconds: env('RETRY_MAX_SECONDS', seconds(600)),
  /** A pod stuck pulling its image this long fails the attempt with ImagePullFailed. */
  imagePullTimeoutSeconds: env('IMAGE_PULL_TIMEOUT_SECONDS', seconds(300)),
  leaderElection: env('LEADER_ELECTION', bool(false)),
  leaseName: env('LEASE_NAME', z.string().default('pagewright-manager')),
  /** Where the Lease lives; default: WATCH_NAMESPACE, else POD_NAMESPACE, else "default". */
  leaseNamespace: env('LEASE_NAMESPACE', z.string().optional()),
  leaseDurationSeconds: env('LEASE_DURATION_SECONDS', seconds(15)),
  leaseRenewSeconds: env('LEASE_RENEW_SECONDS', seconds(5)),
  /** A leader that could not renew for this long stops leading; default two thirds of the lease duration (client-go's 10 of 15). */
  leaseRenewDeadlineSeconds: env('LEASE_RENEW_DEADLINE_SECONDS', z.coerce.number().positive().optional()),
  /** This replica's identity in the Lease (the pod name in a Deployment). */
  identity: env('POD_NAME', z.string().optional()),
  podNamespace: env('POD_NAMESPACE', z.string().optional()),
  logLevel: env('LOG_LEVEL', logLevel()),
  // webhooks of PagewrightSites (manager/webhooks/config.ts)
  ...webhookConfigSpec,
  ...siteSyncConfigSpec,
  /** Signed review links in a Succeeded job's status (manager/review-link.ts): the preview's public URL and its link secret, or neither. */
  previewBaseUrl: env('PREVIEW_BASE_URL', httpUrl().optional()),
  previewLinkSecret: env(
    'PREVIEW_LINK_SECRET',
    z.string().min(MIN_SECRET_BYTES, `must be at least ${MIN_SECRET_BYTES} characters`).optional(),
    {
      secret: true,
    },
  ),
  previewLinkTtlSeconds: env('PREVIEW_LINK_TTL_SECONDS', positiveInt(24 * 3600)),
};
export type ManagerConfig = ConfigOf<typeof managerConfigSpec>;
