/**
 * The real model gateway (gateway/main.ts, via tsx) as a child process of the test, configured
 * as its Deployment configures it: a watch on the PagewrightJobs of one namespace, the real
 * endpoint's key, usage reports to a manager URL. Used by manager-env.ts (on the real node) and
 * by the hostile-client suite (test/integration/gateway-hostile.test.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { OWNER_ENV } from './control-plane/owner.js';
import { waitFor } from './processes.js';
import { REPO_ROOT } from './sites.js';

export interface GatewayProcess {
  /** What runners use as their model endpoint (…/v1). */
  url: string;
  /** http://host:port (probes, /metrics). */
  origin: string;
  proc: ChildProcess;
  logs(): Promise<string>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface GatewayProcessOptions {
  kubeconfigPath: string;
  namespace: string;
  host: string;
  port: number;
  owner: string;
  upstream: { url: string; key: string };
  secret: string;
  reportToken: string;
  managerUrl: string;
  logPath: string;
  env?: Record<string, string>;
}

export async function startGatewayProcess(o: GatewayProcessOptions): Promise<GatewayProcess> {
  const log = createWriteStream(o.logPath, { flags: 'a' });
  const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'gateway/main.ts')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      KUBECONFIG: o.kubeconfigPath,
      [OWNER_ENV]: o.owner,
      PAGEWRIGHT_GATEWAY_HOST: o.host,
      PAGEWRIGHT_GATEWAY_PORT: String(o.port),
      PAGEWRIGHT_LLM_URL: o.upstream.url,
      PAGEWRIGHT_LLM_KEY: o.upstream.key,
      PAGEWRIGHT_GATEWAY_SECRET: o.secret,
      PAGEWRIGHT_GATEWAY_REPORT_TOKEN: o.reportToken,
      PAGEWRIGHT_MANAGER_URL: o.managerUrl,
      PAGEWRIGHT_WATCH_NAMESPACE: o.namespace,
      PAGEWRIGHT_LOG_LEVEL: 'debug',
      ...o.env,
    },
  });
  proc.stdout?.pipe(log, { end: false });
  proc.stderr?.pipe(log, { end: false });
  const exited = once(proc, 'exit');
  const origin = `http://${o.host}:${o.port}`;
  const logs = () => readFile(o.logPath, 'utf8').catch(() => '');
  await waitFor(
    'gateway /readyz',
    async () => {
      if (proc.exitCode !== null) throw new Error(`gateway exited with ${proc.exitCode}:\n${await logs()}`);
      const res = await request(`${origin}/readyz`).catch(() => null);
      await res?.body.dump();
      return res?.statusCode === 200;
    },
    30_000,
    100,
  );
  return {
    url: `${origin}/v1`,
    origin,
    proc,
    logs,
    async kill(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
      log.end();
    },
  };
}
