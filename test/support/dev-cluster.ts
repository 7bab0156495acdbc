/**
 * `make dev-cluster`: a real single-node Kubernetes cluster on this machine (node/cluster.ts:
 * kube-apiserver, etcd, containerd, kubelet, kube-scheduler, kube-controller-manager, kube-proxy,
 * CoreDNS) with Pagewright deployed from its images through deploy/dev, and the example site in
 * storage. Offline by default (the demo model); with PAGEWRIGHT_LLM_KEY set, the real endpoint.
 *   dev-cluster.ts up     start it in the background, print `export KUBECONFIG=...`
 *   dev-cluster.ts down   stop it, leaving no process, mount, link or iptables rule
 *   dev-cluster.ts serve  (internal) the background process that owns the node
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isOwnerAlive, ownerId } from './control-plane/owner.js';
import { nodeDown, nodeStateDir, runningNodeOwner, startRealNode } from './node/cluster.js';
import { EXAMPLE_SITE_ID, IMAGES, NAMESPACE, deployPagewright } from './node/deploy.js';
import { waitFor } from './processes.js';

const stateDir = join(nodeStateDir(), 'dev-cluster');
const pidFile = join(stateDir, 'owner');
const kubeconfig = join(stateDir, 'kubeconfig');
const logFile = join(stateDir, 'dev-cluster.log');
const failedFile = join(stateDir, 'failed');

async function servingOwner(): Promise<string | null> {
  const owner = (await readFile(pidFile, 'utf8').catch(() => '')).trim();
  return owner && isOwnerAlive(owner) ? owner : null;
}

async function up(): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  if (await servingOwner()) {
    console.log(`dev cluster already running\nexport KUBECONFIG=${kubeconfig}`);
    return;
  }
  const other = await runningNodeOwner();
  if (other) throw new Error(`a test run owns this machine's node (pid ${other.split(':')[0]}); wait for it to end`);
  await Promise.all([kubeconfig, failedFile].map((f) => rm(f, { force: true })));
  const log = openSync(logFile, 'w');
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'serve'], {
    detached: true,
    stdio: ['ignore', log, log],
    env: process.env,
  });
  child.unref();
  await writeFile(pidFile, ownerId(child.pid!) ?? '');
  console.log(`starting the dev cluster (log: ${logFile}); the first start builds images and takes a few minutes`);
  await waitFor(
    'the dev cluster to start',
    async () => {
      if (existsSync(failedFile) || child.exitCode !== null)
        throw new Error(`the dev cluster failed to start:\n${(await readFile(logFile, 'utf8')).slice(-4000)}`);
      return existsSync(kubeconfig);
    },
    15 * 60_000,
    250,
  );
  const llm = process.env.PAGEWRIGHT_LLM_KEY
    ? `the model endpoint ${process.env.PAGEWRIGHT_LLM_URL ?? 'https://api.openai.com/v1'}`
    : 'the demo model (offline; set PAGEWRIGHT_LLM_KEY for a real one)';
  console.log(`dev cluster is up: one real node (containerd + kubelet), Pagewright in namespace ${NAMESPACE} from the
images ${IMAGES.join(', ')}, site ${EXAMPLE_SITE_ID} in storage, jobs using ${llm}.

export KUBECONFIG=${kubeconfig}
kubectl get nodes
kubectl -n ${NAMESPACE} apply -f examples/job.yaml
kubectl -n ${NAMESPACE} get pwj -w
make dev-cluster-down    # stops it and removes everything it made`);
}

async function down(): Promise<void> {
  const owner = await servingOwner();
  if (owner) {
    process.kill(Number(owner.split(':')[0]), 'SIGTERM');
    await waitFor('the dev cluster to stop', async () => !(await servingOwner()), 60_000, 100).catch(() => {
      process.kill(Number(owner.split(':')[0]), 'SIGKILL');
    });
  }
  // whatever happened to the serving process (stopped, crashed, SIGKILLed), remove all the node made
  nodeDown();
  await rm(stateDir, { recursive: true, force: true });
  console.log(owner ? 'dev cluster stopped; nothing of it is left' : 'dev cluster was not running; cleaned up anything left over');
}

async function serve(): Promise<void> {
  const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);
  try {
    const node = await startRealNode({ images: IMAGES, log });
    let stopping = false;
    const stop = async () => {
      if (stopping) return;
      stopping = true;
      log('stopping');
      await node.stop();
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop());
    process.on('SIGINT', () => void stop());
    log('deploying Pagewright (deploy/apply.sh deploy/dev)');
    await deployPagewright(node, { llmKey: process.env.PAGEWRIGHT_LLM_KEY, llmUrl: process.env.PAGEWRIGHT_LLM_URL });
    // the admin kubeconfig, with the namespace jobs go to as its default
    await writeFile(kubeconfig, (await readFile(node.kubeconfigPath, 'utf8')).replace(/namespace: default/, `namespace: ${NAMESPACE}`), {
      mode: 0o600,
    });
    log(`ready: KUBECONFIG=${kubeconfig}`);
  } catch (err) {
    log(`failed: ${(err as Error).stack ?? err}`);
    await writeFile(failedFile, String(err));
    process.exit(1);
  }
}

const commands: Record<string, () => Promise<void>> = { up, down, serve };
const command = commands[process.argv[2] ?? ''];
if (!command) {
  console.error('usage: dev-cluster.ts up|down');
  process.exit(2);
}
try {
  await command();
} catch (err) {
  console.error(`dev-cluster: ${(err as Error).message}`);
  process.exit(1);
}
