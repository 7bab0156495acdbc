/**
 * `make dev-cluster`: a local control plane and local kubelet for developers without Docker.
 *   dev-cluster.ts up     start in the background, print `export KUBECONFIG=...`
 *   dev-cluster.ts down   stop it, leaving no process
 *   dev-cluster.ts serve  (internal) the background process itself
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../../common/logger.js';
import { startControlPlane } from './control-plane.js';
import { LocalKubelet } from './local-kubelet.js';
import { waitFor } from './processes.js';
import { RUNNER_IMAGE, runnerImageRuntime } from './runner-image.js';

const stateDir = join(process.env.PAGEWRIGHT_CACHE_DIR ?? join(homedir(), '.cache', 'pagewright'), 'dev-cluster');
const pidFile = join(stateDir, 'pid');
const kubeconfig = join(stateDir, 'kubeconfig');
const logFile = join(stateDir, 'dev-cluster.log');

async function runningPid(): Promise<number | null> {
  const pid = Number(await readFile(pidFile, 'utf8').catch(() => ''));
  if (!pid) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

async function up(): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  if (await runningPid()) {
    console.log(`dev cluster already running\nexport KUBECONFIG=${kubeconfig}`);
    return;
  }
  await rm(kubeconfig, { force: true });
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'serve'], { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  await writeFile(pidFile, String(child.pid));
  await waitFor('the dev cluster to start (see ' + logFile + ')', async () => {
    if (child.exitCode !== null) throw new Error(`dev cluster exited; see ${logFile}`);
    return existsSync(kubeconfig);
  }, 180_000, 200);
  console.log(`dev cluster is up: kube-apiserver, etcd and a local kubelet (node pagewright-local)
image ${RUNNER_IMAGE} runs this checkout's dist/runner/bundle.mjs (run \`make build\` first)
logs: ${logFile}

export KUBECONFIG=${kubeconfig}`);
}

async function down(): Promise<void> {
  const pid = await runningPid();
  if (!pid) {
    console.log('dev cluster is not running');
    return;
  }
  process.kill(pid, 'SIGTERM');
  await waitFor('the dev cluster to stop', async () => (await runningPid()) === null, 30_000, 100);
  await rm(pidFile, { force: true });
  await rm(kubeconfig, { force: true });
  console.log('dev cluster stopped');
}

async function serve(): Promise<void> {
  const logger = createLogger({ service: 'dev-cluster' });
  const cp = await startControlPlane();
  const kubelet = new LocalKubelet({ kubeConfig: cp.kubeConfig(), images: { [RUNNER_IMAGE]: runnerImageRuntime() }, logger, logDir: join(stateDir, 'pods') });
  await mkdir(join(stateDir, 'pods'), { recursive: true });
  await kubelet.start();
  await copyFile(cp.kubeconfigPath, kubeconfig);
  logger.info('dev cluster ready', { server: cp.server, kubeconfig });
  const stop = async () => {
    await kubelet.stop();
    await cp.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

const commands: Record<string, () => Promise<void>> = { up, down, serve };
const command = commands[process.argv[2] ?? ''];
if (!command) {
  console.error('usage: dev-cluster.ts up|down');
  process.exit(2);
}
await command();
