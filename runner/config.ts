/** The runner's PAGEWRIGHT_* environment (DESIGN.md "runner"), validated once at start-up. */
import { z } from 'zod';
import { env, httpUrl, json, logLevel, port, positiveInt } from '../common/config.js';
import { DEFAULT_MODEL } from '../common/models.js';
import { RunnerJob } from '../common/schemas.js';
import { DEFAULT_MAX_DIFF_BYTES } from './diff.js';

export const runnerConfigSpec = {
  port: env('WORKER_PORT', port(8082)),
  /** Pods bind all interfaces; the local test kubelet gives each pod its own loopback address. */
  host: env('WORKER_HOST', z.string().default('0.0.0.0')),
  workDir: env('WORK_DIR', z.string().min(1).default('/work')),
  /** The runner's own files, out of the agent's reach (in a pod: a volume only its container mounts). Default: WORK_DIR. */
  privateDir: env('PRIVATE_DIR', z.string().min(1).optional()),
  /** The agent server in the agent container (a pod); unset: codex runs as a child process here. */
  agentUrl: env('AGENT_URL', httpUrl().optional()),
  llmKey: env('LLM_KEY', z.string().min(1), { secret: true }),
  llmUrl: env('LLM_URL', httpUrl().default('https://api.openai.com/v1')),
  managerUrl: env('MANAGER_URL', httpUrl().optional()),
  storageUrl: env('STORAGE_URL', httpUrl()),
  job: env('JOB', json(RunnerJob)),
  jobToken: env('JOB_TOKEN', z.string().min(1), { secret: true }),
  codexBinary: env('CODEX_BINARY', z.string().min(1).default('/usr/local/bin/codex')),
  instructionsPath: env('INSTRUCTIONS_PATH', z.string().min(1).default('/.codex/instructions.md')),
  codexModel: env('CODEX_MODEL', z.string().min(1).default(DEFAULT_MODEL)),
  killGraceMs: env('KILL_GRACE_MS', positiveInt(3000)),
  codexRequestRetries: env('CODEX_REQUEST_RETRIES', z.coerce.number().int().min(0).max(20).default(4)),
  codexStreamRetries: env('CODEX_STREAM_RETRIES', z.coerce.number().int().min(0).max(20).default(5)),
  maxArchiveEntries: env('MAX_ARCHIVE_ENTRIES', positiveInt(5000)),
  maxUnpackedBytes: env('MAX_UNPACKED_BYTES', positiveInt(512 * 1024 * 1024)),
  /** diff.patch is cut here (runner/diff.ts); the job's diffSummary then says `truncated`. */
  maxDiffBytes: env('MAX_DIFF_BYTES', z.coerce.number().int().min(1024).default(DEFAULT_MAX_DIFF_BYTES)),
  callbackTimeoutMs: env('CALLBACK_TIMEOUT_MS', positiveInt(10 * 60 * 1000)),
  /** Keep answering /status this long after the job ended, then exit. */
  exitDelayMs: env('EXIT_DELAY_MS', z.coerce.number().int().min(0).default(2000)),
  logLevel: env('LOG_LEVEL', logLevel()),
};

/** The agent container's process (`bundle.mjs agent`, runner/agent-server.ts): no job, no credentials. */
export const agentConfigSpec = {
  port: env('AGENT_PORT', port(8083)),
  logLevel: env('LOG_LEVEL', logLevel()),
};
