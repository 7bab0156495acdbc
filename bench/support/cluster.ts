/** The local control plane with the CRD, and the manager (dist/, as in its image) as a child process. */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { type ControlPlane, startControlPlane } from '../../test/support/control-plane.js';
import { ensureCrd } from '../../test/support/manager-env.js';
import { getFreePort } from '../../test/support/ports.js';
import { waitFor } from '../../test/support/processes.js';
import { REPO_ROOT } from '../../test/support/sites.js';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { loadAllYaml } from '@kubernetes/client-node';

export async function startCluster(): Promise<ControlPlane> {
  const cp = await startControlPlane();
  await ensureCrd(cp);
  return cp;
}

export interface ManagerChild {
  url: string;
  pid: number;
  proc: ChildProcess;
  metric(name: string): Promise<number>;
  stop(): Promise<void>;
}

/** The NODE_OPTIONS the manager's Deployment sets, so the bench runs the manager as deployed. */
function deployedManagerNodeOptions(): string {
  const docs = loadAllYaml(readFileSync(join(REPO_ROOT, 'deploy/k8s/manager.yaml'), 'utf8')) as Array<{
    kind?: string;
    spec?: { template?: { spec?: { containers?: Array<{ env?: Array<{ name: string; value?: string }> }> } } };
  }>;
  const deployment = docs.find((d) => d?.kind === 'Deployment');
  return deployment?.spec?.template?.spec?.containers?.[0]?.env?.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '';
}

export async function startManagerChild(cp: ControlPlane, namespace: string, env: Record<string, string> = {}): Promise<ManagerChild> {
  const port = await getFreePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = spawn(process.execPath, [join(REPO_ROOT, 'dist/manager/main.js')], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      PATH: process.env.PATH,
      KUBECONFIG: cp.kubeconfigPath,
      PAGEWRIGHT_MANAGER_HOST: '127.0.0.1',
      PAGEWRIGHT_MANAGER_PORT: String(port),
      PAGEWRIGHT_MANAGER_URL: url,
      PAGEWRIGHT_WATCH_NAMESPACE: namespace,
      PAGEWRIGHT_STORAGE_URL: 'http://127.0.0.1:9',
      PAGEWRIGHT_STORAGE_ADMIN_TOKEN: randomBytes(16).toString('hex'),
      PAGEWRIGHT_TOKEN_SECRET: randomBytes(32).toString('hex'),
      // no gateway runs: pods stay Pending, so nothing ever calls it (the manager signs credentials for it)
      PAGEWRIGHT_GATEWAY_URL: 'http://127.0.0.1:9/v1',
      PAGEWRIGHT_GATEWAY_SECRET: randomBytes(32).toString('hex'),
      PAGEWRIGHT_GATEWAY_REPORT_TOKEN: randomBytes(16).toString('hex'),
      PAGEWRIGHT_LOG_LEVEL: 'warn',
      NODE_OPTIONS: deployedManagerNodeOptions(),
      ...env,
    },
  });
  await waitFor(
    'manager ready',
    async () => {
      if (proc.exitCode !== null) throw new Error(`manager exited ${proc.exitCode}`);
      const res = await request(`${url}/readyz`).catch(() => null);
      await res?.body.dump();
      return res?.statusCode === 200;
    },
    120_000,
    50,
  );
  return {
    url,
    pid: proc.pid!,
    proc,
    async metric(name) {
      const text = await (await request(`${url}/metrics`)).body.text();
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      return line ? Number(line.split(' ').pop()) : NaN;
    },
    async stop() {
      proc.kill('SIGTERM');
      if (proc.exitCode === null) await once(proc, 'exit');
    },
  };
}
