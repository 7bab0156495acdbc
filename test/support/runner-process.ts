/** The real runner (runner/main.ts) as a child process, configured like a pod would configure it. */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { bundledCodexBinary } from '../../cli/codex-binary.js';
import { DEFAULT_MODEL } from '../../common/models.js';
import { runMarker } from '../../common/process-marker.js';
import { resolveRunnerEnv, runnerEnvironment } from '../../common/runner-launch.js';
import type { RunnerJobInput, RunnerStatus } from '../../common/schemas.js';
import { getFreePort } from './ports.js';
import { REPO_ROOT } from './sites.js';

export const RUNNER_INSTRUCTIONS = join(REPO_ROOT, 'runner', 'instructions.md');

export interface RunnerUnderTest {
  url: string;
  pid: number;
  proc: ChildProcess;
  workDir: string;
  token: string;
  exited: Promise<number | null>;
  stderr(): string;
  status(): Promise<RunnerStatus>;
  kill(token?: string | null): Promise<{ status: number; body: unknown }>;
  /** The marker on every process of the codex run (job, attempt, runner pid). */
  marker: string;
}

export interface StartRunnerOptions {
  job: RunnerJobInput;
  token: string;
  storageUrl: string;
  llmUrl: string;
  llmKey: string;
  managerUrl?: string;
  instructionsPath?: string;
  env?: Record<string, string>;
}

export async function startRunner(opts: StartRunnerOptions): Promise<RunnerUnderTest> {
  const port = await getFreePort();
  const workDir = await mkdtemp(join(tmpdir(), 'pw-runner-'));
  const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'runner', 'main.ts')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: resolveRunnerEnv(
      runnerEnvironment({
        job: opts.job,
        port,
        host: '127.0.0.1',
        workDir,
        llmUrl: opts.llmUrl,
        storageUrl: opts.storageUrl,
        ...(opts.managerUrl ? { managerUrl: opts.managerUrl } : {}),
        model: DEFAULT_MODEL,
        codexBinary: bundledCodexBinary(),
        instructionsPath: opts.instructionsPath ?? RUNNER_INSTRUCTIONS,
        extra: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '',
          PAGEWRIGHT_CODEX_REQUEST_RETRIES: '0',
          PAGEWRIGHT_CODEX_STREAM_RETRIES: '0',
          PAGEWRIGHT_KILL_GRACE_MS: '1000',
          PAGEWRIGHT_EXIT_DELAY_MS: '0',
          ...opts.env,
        },
      }),
      { 'runner-token': opts.token, 'gateway-credential': opts.llmKey },
    ),
  });
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = once(proc, 'exit').then(([code]) => code as number | null);
  const url = `http://127.0.0.1:${port}`;
  const runner: RunnerUnderTest = {
    url,
    pid: proc.pid!,
    proc,
    workDir,
    token: opts.token,
    exited,
    stderr: () => stderr,
    marker: runMarker(opts.job.job_id, opts.job.attempt ?? 1, proc.pid!),
    async status() {
      const res = await request(`${url}/status`);
      return (await res.body.json()) as RunnerStatus;
    },
    async kill(token = opts.token) {
      const res = await request(`${url}/kill`, { method: 'POST', headers: token === null ? {} : { authorization: `Bearer ${token}` } });
      return { status: res.statusCode, body: await res.body.json() };
    },
  };
  // wait until it serves /health (or died on bad config)
  const deadline = Date.now() + 20_000;
  for (;;) {
    const up = await request(`${url}/health`).then(
      (r) => r.body.text().then(() => r.statusCode === 200),
      () => false,
    );
    if (up) return runner;
    // a job can end (and the runner exit) before the first poll; the caller checks `exited`
    if (proc.exitCode !== null) return runner;
    if (Date.now() > deadline) throw new Error(`runner did not start:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
