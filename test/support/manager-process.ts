/**
 * The real manager (manager/main.ts, via tsx) as a child process of the test, configured as its
 * Deployment configures it, with the test's storage and gateway. Used by manager-env.ts (on the
 * real node) and by the suites on the API-only control plane.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { OWNER_ENV } from './control-plane/owner.js';
import { waitFor } from './processes.js';
import { REPO_ROOT } from './sites.js';

export interface ManagerProcess {
  url: string;
  port: number;
  proc: ChildProcess;
  exited: Promise<number | null>;
  logPath: string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface ManagerProcessOptions {
  kubeconfigPath: string;
  namespace: string;
  host: string;
  port: number;
  owner: string;
  storage: { url: string; adminToken: string; tokenSecret: string };
  gateway: { url: string; secret: string; reportToken: string };
  runnerImage: string;
  /** Where its stdout and stderr go (appended), and that file's path for error messages. */
  log: Writable;
  logPath: string;
  env?: Record<string, string>;
}

export async function startManagerProcess(o: ManagerProcessOptions): Promise<ManagerProcess> {
  const url = `http://${o.host}:${o.port}`;
  const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'manager/main.ts')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      KUBECONFIG: o.kubeconfigPath,
      [OWNER_ENV]: o.owner,
      PAGEWRIGHT_MANAGER_HOST: o.host,
      PAGEWRIGHT_MANAGER_PORT: String(o.port),
      PAGEWRIGHT_MANAGER_URL: url,
      PAGEWRIGHT_WATCH_NAMESPACE: o.namespace,
      PAGEWRIGHT_RUNNER_IMAGE: o.runnerImage,
      PAGEWRIGHT_RUNNER_IMAGE_PULL_POLICY: 'Never',
      PAGEWRIGHT_STORAGE_URL: o.storage.url,
      PAGEWRIGHT_STORAGE_ADMIN_TOKEN: o.storage.adminToken,
      PAGEWRIGHT_TOKEN_SECRET: o.storage.tokenSecret,
      PAGEWRIGHT_GATEWAY_URL: o.gateway.url,
      PAGEWRIGHT_GATEWAY_SECRET: o.gateway.secret,
      PAGEWRIGHT_GATEWAY_REPORT_TOKEN: o.gateway.reportToken,
      PAGEWRIGHT_RUNNER_MEMORY_LIMIT: '768Mi',
      PAGEWRIGHT_RETRY_BASE_SECONDS: '1',
      PAGEWRIGHT_RESYNC_SECONDS: '30',
      PAGEWRIGHT_LOG_LEVEL: 'debug',
      PAGEWRIGHT_RUNNER_ENV: JSON.stringify({
        PAGEWRIGHT_CODEX_REQUEST_RETRIES: '0',
        PAGEWRIGHT_CODEX_STREAM_RETRIES: '0',
        PAGEWRIGHT_KILL_GRACE_MS: '1000',
      }),
      ...o.env,
    },
  });
  proc.stdout?.pipe(o.log, { end: false });
  proc.stderr?.pipe(o.log, { end: false });
  const exited = once(proc, 'exit').then(([code]) => code as number | null);
  const handle: ManagerProcess = {
    url,
    port: o.port,
    proc,
    exited,
    logPath: o.logPath,
    async kill(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
  await waitFor(
    'manager /readyz',
    async () => {
      if (proc.exitCode !== null) throw new Error(`manager exited with ${proc.exitCode}:\n${await readFile(o.logPath, 'utf8')}`);
      const res = await request(`${url}/readyz`).catch(() => null);
      await res?.body.dump();
      return res?.statusCode === 200;
    },
    30_000,
    100,
  );
  return handle;
}
