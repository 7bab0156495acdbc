/**
 * The runner's launch contract, built in one place: the command that starts it and the
 * environment runner/config.ts reads. The manager's pod spec, `pagewright run`, the tests and the
 * benchmarks all start runners from this, so the contract cannot drift between them. Its two
 * credentials are named, not given: a pod takes them from the attempt's Secret, a local run
 * fills them in (resolveRunnerEnv).
 */
import type { RunnerJobInput } from './schemas.js';

/** The runner's bundle in its image (Dockerfile.runner); the agent container runs it with `agent`. */
export const RUNNER_COMMAND = ['node', '/app/dist/runner/bundle.mjs'] as const;
export const AGENT_COMMAND = [...RUNNER_COMMAND, 'agent'] as const;

/** The credentials a runner gets, by the key of the attempt's Secret that holds them. */
export const RUNNER_SECRETS = { runnerToken: 'runner-token', gatewayCredential: 'gateway-credential' } as const;
export type RunnerSecretKey = (typeof RUNNER_SECRETS)[keyof typeof RUNNER_SECRETS];

export interface RunnerLaunch {
  job: RunnerJobInput;
  storageUrl: string;
  /** The model endpoint: in a cluster, the gateway (its credential is the runner's "key"). */
  llmUrl: string;
  /** Where results and progress go; unset: nobody listens. */
  managerUrl?: string;
  port: number;
  host?: string;
  workDir: string;
  privateDir?: string;
  /** The agent server in the pod's agent container; unset: codex runs as the runner's child. */
  agentUrl?: string;
  model?: string;
  codexBinary?: string;
  instructionsPath?: string;
  /** Anything else, names as given: more of runner/config.ts's (PAGEWRIGHT_KILL_GRACE_MS, ...), HOME, PATH. */
  extra?: Record<string, string>;
}

export type RunnerEnvVar = { name: string; value: string } | { name: string; secret: RunnerSecretKey };

export function runnerEnvironment(l: RunnerLaunch): RunnerEnvVar[] {
  const v = (name: string, value: string | undefined): RunnerEnvVar[] => (value === undefined ? [] : [{ name, value }]);
  return [
    ...v('PAGEWRIGHT_WORKER_PORT', String(l.port)),
    ...v('PAGEWRIGHT_WORKER_HOST', l.host),
    ...v('PAGEWRIGHT_WORK_DIR', l.workDir),
    ...v('PAGEWRIGHT_PRIVATE_DIR', l.privateDir),
    ...v('PAGEWRIGHT_AGENT_URL', l.agentUrl),
    ...v('PAGEWRIGHT_JOB', JSON.stringify(l.job)),
    { name: 'PAGEWRIGHT_JOB_TOKEN', secret: RUNNER_SECRETS.runnerToken },
    { name: 'PAGEWRIGHT_LLM_KEY', secret: RUNNER_SECRETS.gatewayCredential },
    ...v('PAGEWRIGHT_LLM_URL', l.llmUrl),
    ...v('PAGEWRIGHT_MANAGER_URL', l.managerUrl),
    ...v('PAGEWRIGHT_STORAGE_URL', l.storageUrl),
    ...v('PAGEWRIGHT_CODEX_MODEL', l.model),
    ...v('PAGEWRIGHT_CODEX_BINARY', l.codexBinary),
    ...v('PAGEWRIGHT_INSTRUCTIONS_PATH', l.instructionsPath),
    ...Object.entries(l.extra ?? {}).map(([name, value]) => ({ name, value })),
  ];
}

/** The environment as a process gets it, the credentials filled in. */
export function resolveRunnerEnv(env: RunnerEnvVar[], secrets: Record<RunnerSecretKey, string>): Record<string, string> {
  return Object.fromEntries(env.map((e) => [e.name, 'secret' in e ? secrets[e.secret] : e.value]));
}
