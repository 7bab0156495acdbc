/**
 * Pagewright as a user installs it, on the real node: deploy/apply.sh with the dev overlay
 * (deploy/dev: deploy/k8s as is, plus pull policy Never, a PersistentVolume and the demo model),
 * then the example site pushed (`pagewright sites push`, as the README does). The same steps as `make kind-up`;
 * used by `make dev-cluster` and the real-node suite.
 */
import { execFile } from 'node:child_process';
import { chown, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api } from '@kubernetes/client-node';
import { StorageClient } from '../../../common/storage-client.js';
import { REPO_ROOT } from '../sites.js';
import type { RealNode } from './cluster.js';

const run = promisify(execFile);

export const NAMESPACE = 'pagewright';
export const EXAMPLE_SITE_ID = 'harbor-lane-bakery';
/** deploy/dev/storage-volume.yaml's hostPath; node-down.sh removes it with the node. */
const DEV_STORAGE_DIR = '/var/lib/pagewright-dev/storage';
export const IMAGES = [
  'pagewright-runner:0.1.0',
  'pagewright-manager:0.1.0',
  'pagewright-storage:0.1.0',
  'pagewright-gateway:0.1.0',
  'pagewright-preview:0.1.0',
];

export interface Deployment {
  namespace: string;
  /** storage through its Service's ClusterIP (kube-proxy answers for host processes too) */
  storageUrl: string;
  storage: StorageClient;
  adminToken: string;
  baseVersion: string;
}

export async function deployPagewright(node: RealNode, opts: { llmKey?: string; llmUrl?: string } = {}): Promise<Deployment> {
  // a fresh, empty volume owned by storage's uid (hostPath volumes get no fsGroup)
  await rm(dirname(DEV_STORAGE_DIR), { recursive: true, force: true });
  await mkdir(DEV_STORAGE_DIR, { recursive: true });
  await chown(DEV_STORAGE_DIR, 10001, 10001);
  const env: NodeJS.ProcessEnv = {
    PATH: `${node.binDir}:${process.env.PATH}`,
    HOME: process.env.HOME,
    KUBECONFIG: node.kubeconfigPath,
    KUBECTL: join(node.binDir, 'kubectl'),
  };
  if (opts.llmKey) Object.assign(env, { PAGEWRIGHT_LLM_KEY: opts.llmKey, PAGEWRIGHT_LLM_URL: opts.llmUrl ?? 'https://api.openai.com/v1' });
  await run(join(REPO_ROOT, 'deploy/apply.sh'), ['deploy/dev'], { env, cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024 }).catch(
    (err: Error & { stdout?: string; stderr?: string }) => {
      throw new Error(`deploy/apply.sh deploy/dev failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
    },
  );

  const core = node.kubeConfig().makeApiClient(CoreV1Api);
  const secret = await core.readNamespacedSecret({ namespace: NAMESPACE, name: 'pagewright-internal' });
  const adminToken = Buffer.from(secret.data?.['storage-admin-token'] ?? '', 'base64').toString();
  const service = await core.readNamespacedService({ namespace: NAMESPACE, name: 'pagewright-storage' });
  const storageUrl = `http://${service.spec?.clusterIP}:8080`;
  // the README's push: the CLI with the user's kubeconfig, through the review API (it creates
  // the PagewrightSite); no storage token in the user's hands
  const push = await run(
    process.execPath,
    [join(REPO_ROOT, 'dist/cli/main.js'), 'sites', 'push', EXAMPLE_SITE_ID, 'examples/site', '-n', NAMESPACE],
    {
      env,
      cwd: REPO_ROOT,
    },
  ).catch((err: Error & { stdout?: string; stderr?: string }) => {
    throw new Error(`pagewright sites push failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  });
  const version = /version ([0-9a-f]{64})/.exec(push.stdout)?.[1];
  if (!version) throw new Error(`pagewright sites push printed no version: ${push.stdout}`);
  return {
    namespace: NAMESPACE,
    storageUrl,
    storage: new StorageClient({ baseUrl: storageUrl, token: adminToken }),
    adminToken,
    baseVersion: version,
  };
}
