/**
 * Everything the manager's tests run against, all real: the shared real node (node/shared.ts:
 * kube-apiserver, etcd, containerd, kubelet, scheduler, controller-manager, kube-proxy, CoreDNS)
 * with the CRD from deploy/k8s, a namespace per suite (Pod Security "restricted", as deploy/k8s
 * labels its own), the storage service with the example site, the scripted model behind the real
 * model gateway (a child process, src via tsx, the only holder of the model's key), and the manager
 * itself as a child process on the host (src via tsx) that can be SIGKILLed and restarted. Runner
 * pods run the runner image on the node, as real containers; the host services listen on the
 * node's address, where pods reach them.
 *
 * The runner image is the fault image (node/runner-faults/): the real runner image, plus a
 * preloaded module that makes it crash, eat memory or hang when the prompt asks (FAULT:...);
 * any other prompt runs the real runner untouched.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import { packDirectory } from '../../runner/archive.js';
import { GROUP, PLURAL, PagewrightJob, VERSION } from '../../common/job-resource.js';
import { type ControlPlane, createNamespace } from './control-plane.js';
import { killOwnedBy, onTermination, selfOwner } from './control-plane/owner.js';
import { demoScript } from '../../cli/demo-script.js';
import { type ModelServer, type ModelTurn, type TurnContext, startModelServer } from '../../cli/model-server.js';
import type { RealNode } from './node/cluster.js';
import type { NodeContainer } from './node/containerd.js';
import { FAULT_IMAGE, sharedRealNode } from './node/shared.js';
import { startGatewayProcess } from './gateway-process.js';
import { createSiteIfAbsent } from '../../common/site-resource.js';
import { type ManagerProcess, startManagerProcess } from './manager-process.js';
import { getFreePort } from './ports.js';
import { waitFor } from './processes.js';
import { EXAMPLE_SITE, REPO_ROOT } from './sites.js';
import { type TestStorage, startTestStorage } from './storage.js';

const CRD_PATHS = ['deploy/k8s/crd.yaml', 'deploy/k8s/site-crd.yaml'].map((p) => join(REPO_ROOT, p));
export const EXAMPLE_SITE_ID = 'harbor-lane-bakery';

/** A gate tests open to let held model turns go on (and close again for the next test). */
class Gate {
  #open!: () => void;
  #opened = new Promise<void>((r) => (this.#open = r));
  open(): void {
    this.#open();
  }
  close(): void {
    this.#opened = new Promise<void>((r) => (this.#open = r));
  }
  wait(): Promise<void> {
    return this.#opened;
  }
}

/**
 * An agent command that outgrows any runner pod's memory limit: `tail` keeps a line it has not
 * seen the end of, and /dev/zero has no newline. Only the kernel's cgroup OOM killer stops it.
 */
// biome-ignore lint/suspicious/noTemplateCurlyInString: a bash expansion, for the agent's shell
const MEMORY_HOG_COMMAND = 'head -c 4000m /dev/zero | tail; echo "hog exit: ${PIPESTATUS[1]}"';

/**
 * Model behaviour by prompt: "SCRIPT:<name>" runs a suite's own script; "MODEL:hang" never answers (a long executing_codex); "MODEL:gate"
 * holds the first turn until the env's gate opens; "MODEL:memory-hog" first has the agent run
 * MEMORY_HOG_COMMAND, then goes on with the demo edit; anything else gets the demo edit.
 */
function routedScript(
  gate: Gate,
  scripts: Map<string, (ctx: TurnContext) => ModelTurn> = new Map(),
): (ctx: TurnContext) => Promise<ModelTurn> {
  return async (ctx) => {
    // "SCRIPT:<name>": a suite's own script (env.scripts), e.g. an attacker's. In any prompt of
    // the conversation: a repair turn (runner/checks/repair.ts) resumes the thread with a prompt
    // of its own, and goes on with the job's script (whose next round is usually its last)
    const named = ctx.prompts.map((p) => /SCRIPT:([\w-]+)/.exec(p)?.[1]).find((x) => x !== undefined);
    if (named && scripts.has(named)) return scripts.get(named)!(ctx);
    if (ctx.prompt.includes('MODEL:hang')) return { kind: 'hang' };
    if (ctx.prompt.includes('MODEL:gate') && ctx.round === 0) await gate.wait();
    if (ctx.prompt.includes('MODEL:memory-hog')) {
      if (ctx.round === 0) return { kind: 'tools', calls: [{ type: 'shell', cmd: MEMORY_HOG_COMMAND, yieldTimeMs: 120_000 }] };
      return demoScript({ ...ctx, round: ctx.round - 1, toolOutputs: ctx.toolOutputs.slice(1) });
    }
    return demoScript(ctx);
  };
}

export type { ManagerProcess };

export interface ManagerEnv {
  cp: RealNode;
  /** The gateway's base URL (…/v1), as runners reach it, and its log. */
  gatewayUrl: string;
  gatewayLogs(): Promise<string>;
  /** The secrets the manager and the gateway share (for tests that forge or check credentials). */
  gatewaySecret: string;
  gatewayReportToken: string;
  namespace: string;
  storage: TestStorage;
  model: ModelServer;
  modelGate: Gate;
  /** Model scripts by name: a job whose prompt says "SCRIPT:<name>" gets that one. */
  scripts: Map<string, (ctx: TurnContext) => ModelTurn>;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  baseVersion: string;
  tokenSecret: string;
  startManager(opts?: { env?: Record<string, string>; port?: number; kubeconfigPath?: string }): Promise<ManagerProcess>;
  getJob(name: string): Promise<PagewrightJob>;
  waitForJob(name: string, what: string, predicate: (job: PagewrightJob) => boolean, timeoutMs?: number): Promise<PagewrightJob>;
  createJob(name: string, spec: Record<string, unknown>): Promise<void>;
  jobPods(uid: string): Promise<V1Pod[]>;
  /** A runner pod's log (its runner container, or the agent sidecar), as `kubectl logs` gets it (apiserver -> kubelet). */
  podLogs(podName: string, container?: 'runner' | 'agent'): Promise<string>;
  /** The pod's containers that containerd still runs (the pause sandbox included). */
  runningContainers(podUid: string): Promise<NodeContainer[]>;
  managerLogs(): Promise<string>;
  /** Manager log tail and every pod's output: for assertion messages. */
  diagnostics(): Promise<string>;
  stop(): Promise<void>;
}

/** Both custom resources of deploy/k8s (PagewrightJob, PagewrightSite), established. */
export async function ensureCrd(cp: ControlPlane): Promise<void> {
  for (const path of CRD_PATHS) await cp.kubectl(['apply', '-f', path]);
  await cp.kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=30s',
    'crd/pagewrightjobs.pagewright.dev',
    'crd/pagewrightsites.pagewright.dev',
  ]);
}

export async function startManagerEnv(prefix: string): Promise<ManagerEnv> {
  const cp = await sharedRealNode();
  await ensureCrd(cp);
  const namespace = await createNamespace(cp, prefix);
  // runner pods must pass the Pod Security Standard deploy/k8s enforces on its namespace
  await cp.kubectl(['label', 'namespace', namespace, 'pod-security.kubernetes.io/enforce=restricted']);
  const kc = cp.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const storage = await startTestStorage({ host: cp.nodeIp });
  const scratch = await mkdtemp(join(tmpdir(), 'pw-mgr-'));
  await packDirectory(EXAMPLE_SITE, join(scratch, 'site.tar.gz'));
  const baseVersion = (await storage.admin.putSiteArtifact(EXAMPLE_SITE_ID, await readFile(join(scratch, 'site.tar.gz')))).version;
  for (const site of ['site-a', 'site-b', 'site-c', 'site-crash', 'site-oom', 'site-deadline', 'site-memory'])
    await storage.admin.putSiteArtifact(site, await readFile(join(scratch, 'site.tar.gz')));
  const modelGate = new Gate();
  const scripts = new Map<string, (ctx: TurnContext) => ModelTurn>();
  const model = await startModelServer({ script: routedScript(modelGate, scripts), host: cp.nodeIp });

  const owner = selfOwner();
  const managers: ManagerProcess[] = [];
  const unregister = onTermination(() => killOwnedBy(owner));
  const tokenSecret = storage.tokenSecret;
  const logPath = join(scratch, 'manager.log');
  const log = createWriteStream(logPath, { flags: 'a' });
  // the manager's usual address, known before it starts: the gateway reports usage there
  const managerPort = await getFreePort(cp.nodeIp);
  const gatewaySecret = randomBytes(32).toString('hex');
  const gatewayReportToken = randomBytes(24).toString('hex');
  const gatewayPort = await getFreePort(cp.nodeIp);
  const gateway = await startGatewayProcess({
    kubeconfigPath: cp.kubeconfigPath,
    namespace,
    host: cp.nodeIp,
    port: gatewayPort,
    owner,
    upstream: { url: model.url, key: model.key },
    secret: gatewaySecret,
    reportToken: gatewayReportToken,
    managerUrl: `http://${cp.nodeIp}:${managerPort}`,
    logPath: join(scratch, 'gateway.log'),
  });
  const gatewayUrl = gateway.url;

  const env: ManagerEnv = {
    cp,
    gatewayUrl,
    gatewayLogs: () => gateway.logs(),
    gatewaySecret,
    gatewayReportToken,
    namespace,
    storage,
    model,
    modelGate,
    scripts,
    core,
    custom,
    baseVersion,
    tokenSecret,
    async startManager(opts = {}) {
      const port =
        opts.port ??
        (managers.some((m) => m.port === managerPort && m.proc.exitCode === null && m.proc.signalCode === null)
          ? await getFreePort(cp.nodeIp)
          : managerPort);
      const handle = await startManagerProcess({
        kubeconfigPath: opts.kubeconfigPath ?? cp.kubeconfigPath,
        namespace,
        host: cp.nodeIp,
        port,
        owner,
        storage: { url: storage.url, adminToken: storage.adminToken, tokenSecret },
        gateway: { url: gatewayUrl, secret: gatewaySecret, reportToken: gatewayReportToken },
        runnerImage: FAULT_IMAGE,
        log,
        logPath,
        ...(opts.env ? { env: opts.env } : {}),
      });
      managers.push(handle);
      return handle;
    },
    async getJob(name) {
      return PagewrightJob.parse(
        await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace, name }),
      );
    },
    async waitForJob(name, what, predicate, timeoutMs = 60_000) {
      let last: PagewrightJob | null = null;
      try {
        return await waitFor(
          `job ${name} ${what}`,
          async () => {
            last = await env.getJob(name).catch(() => null);
            return last && predicate(last) ? last : null;
          },
          timeoutMs,
          200,
        );
      } catch (err) {
        throw new Error(`${(err as Error).message}; last status: ${JSON.stringify((last as PagewrightJob | null)?.status)}`);
      }
    },
    async createJob(name, spec) {
      await createSiteIfAbsent(custom, namespace, String(spec.siteId));
      await custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace,
        body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PagewrightJob', metadata: { name }, spec },
      });
    },
    async jobPods(uid) {
      return (await core.listNamespacedPod({ namespace, labelSelector: `pagewright.dev/job=${uid}` })).items;
    },
    managerLogs: () => readFile(logPath, 'utf8').catch(() => ''),
    async podLogs(podName, container = 'runner') {
      return core.readNamespacedPodLog({ namespace, name: podName, container }).catch((err: Error) => `(no log: ${err.message})`);
    },
    async runningContainers(podUid) {
      return (await cp.containers(podUid)).filter((c) => c.status === 'RUNNING');
    },
    async diagnostics() {
      const pods = (await core.listNamespacedPod({ namespace })).items;
      const logs = await Promise.all(
        pods.map(
          async (p) =>
            `--- pod ${p.metadata?.name} (${p.status?.phase}):\n${(await env.podLogs(p.metadata!.name!)).slice(-3000)}\n--- its agent:\n${(await env.podLogs(p.metadata!.name!, 'agent')).slice(-1500)}`,
        ),
      );
      return `--- manager:\n${(await env.managerLogs()).slice(-5000)}\n--- gateway:\n${(await env.gatewayLogs()).slice(-2000)}\n${logs.join('\n')}`;
    },
    async stop() {
      await Promise.all(managers.map((m) => m.kill('SIGKILL')));
      await gateway.kill('SIGKILL');
      // the namespace's pods and Secrets go with it (the node's garbage collector and kubelet)
      await cp.kubectl(['delete', 'namespace', namespace, '--wait=false']);
      unregister();
      log.end();
      await model.close();
      await storage.close();
      await rm(scratch, { recursive: true, force: true });
    },
  };
  return env;
}

export function randomName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}
