/**
 * Everything the manager's integration tests run against, all real: the shared control plane
 * (kube-apiserver + etcd) with the CRD from deploy/k8s, a namespace per suite, the storage
 * service with the example site, the scripted model, the local kubelet running the
 * pagewright-runner image (the built runner + the real Codex CLI), and the manager itself as a
 * child process (src via tsx) that can be SIGKILLed and restarted.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, type V1Container, type V1Pod } from '@kubernetes/client-node';
import { request } from 'undici';
import { packDirectory } from '../../runner/archive.js';
import { GROUP, PLURAL, PagewrightJob, VERSION } from '../../manager/resource.js';
import { type ControlPlane, createNamespace, sharedControlPlane } from './control-plane.js';
import { OWNER_ENV, killOwnedBy, onTermination, selfOwner } from './control-plane/owner.js';
import { LocalKubelet } from './local-kubelet.js';
import { demoScript } from './model-server/demo-script.js';
import { type ModelServer, type ModelTurn, type TurnContext, startModelServer } from './model-server.js';
import { getFreePort } from './ports.js';
import { waitFor } from './processes.js';
import { RUNNER_IMAGE, runnerImageRuntime } from './runner-image.js';
import { EXAMPLE_SITE, REPO_ROOT } from './sites.js';
import { type TestStorage, startTestStorage } from './storage.js';

export const CRD_PATH = join(REPO_ROOT, 'deploy/k8s/crd.yaml');
export const EXAMPLE_JOB = join(REPO_ROOT, 'examples/job.yaml');
export const EXAMPLE_SITE_ID = 'harbor-lane-bakery';

/**
 * Prompts that make the test runner image misbehave like a broken image would, before the
 * real runner starts: FAULT:crash exits 3, FAULT:oom allocates until the memory limit kills it,
 * FAULT:hang never ends. Any other prompt runs the real runner.
 */
function faultOf(container: V1Container): string | null {
  const job = container.env?.find((e) => e.name === 'PAGEWRIGHT_JOB')?.value;
  const prompt = job ? (JSON.parse(job) as { prompt: string }).prompt : '';
  return /^FAULT:(crash|oom|hang)\b/.exec(prompt)?.[1] ?? null;
}
const FAULTS: Record<string, string> = {
  crash: 'process.exit(3)',
  oom: 'const keep = []; setInterval(() => { const b = Buffer.alloc(64 * 1024 * 1024, 1); keep.push(b); }, 20)',
  hang: 'setInterval(() => {}, 1000)',
};

/** A gate tests open to let held model turns go on (and close again for the next test). */
export class Gate {
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
 * Model behaviour by prompt: "MODEL:hang" never answers (a long executing_codex); "MODEL:gate"
 * holds the first turn until the env's gate opens; anything else gets the demo edit.
 */
export function routedScript(gate: Gate): (ctx: TurnContext) => Promise<ModelTurn> {
  return async (ctx) => {
    if (ctx.prompt.includes('MODEL:hang')) return { kind: 'hang' };
    if (ctx.prompt.includes('MODEL:gate') && ctx.round === 0) await gate.wait();
    return demoScript(ctx);
  };
}

export interface ManagerProcess {
  url: string;
  port: number;
  proc: ChildProcess;
  exited: Promise<number | null>;
  logPath: string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface ManagerEnv {
  cp: ControlPlane;
  namespace: string;
  storage: TestStorage;
  model: ModelServer;
  modelGate: Gate;
  kubelet: LocalKubelet;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  baseVersion: string;
  tokenSecret: string;
  startManager(opts?: { env?: Record<string, string>; port?: number; kubeconfigPath?: string }): Promise<ManagerProcess>;
  getJob(name: string): Promise<PagewrightJob>;
  waitForJob(name: string, what: string, predicate: (job: PagewrightJob) => boolean, timeoutMs?: number): Promise<PagewrightJob>;
  createJob(name: string, spec: Record<string, unknown>): Promise<void>;
  jobPods(uid: string): Promise<V1Pod[]>;
  managerLogs(): Promise<string>;
  /** Manager log tail and every pod's output: for assertion messages. */
  diagnostics(): Promise<string>;
  stop(): Promise<void>;
}

export async function ensureCrd(cp: ControlPlane): Promise<void> {
  await cp.kubectl(['apply', '-f', CRD_PATH]);
  await cp.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/pagewrightjobs.pagewright.dev']);
}

export async function startManagerEnv(prefix: string): Promise<ManagerEnv> {
  if (!existsSync(join(REPO_ROOT, 'dist/runner/bundle.mjs'))) {
    throw new Error('the runner image maps to dist/: run `make build` first (make test does)');
  }
  const cp = await sharedControlPlane();
  await ensureCrd(cp);
  const namespace = await createNamespace(cp, prefix);
  const kc = cp.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const storage = await startTestStorage();
  const scratch = await mkdtemp(join(tmpdir(), 'pw-mgr-'));
  await packDirectory(EXAMPLE_SITE, join(scratch, 'site.tar.gz'));
  const baseVersion = (await storage.admin.putSiteArtifact(EXAMPLE_SITE_ID, await readFile(join(scratch, 'site.tar.gz')))).version;
  for (const site of ['site-a', 'site-b', 'site-c', 'site-crash', 'site-oom', 'site-deadline']) await storage.admin.putSiteArtifact(site, await readFile(join(scratch, 'site.tar.gz')));
  const modelGate = new Gate();
  const model = await startModelServer({ script: routedScript(modelGate) });

  const runner = runnerImageRuntime();
  const kubelet = new LocalKubelet({
    kubeConfig: kc,
    namespace,
    logDir: scratch,
    resyncMs: 1000,
    images: {
      [RUNNER_IMAGE]: {
        ...runner,
        command: (c) => {
          const fault = faultOf(c);
          return fault ? [process.execPath, '-e', FAULTS[fault]!] : runner.command(c);
        },
      },
    },
  });
  await kubelet.start();

  const owner = selfOwner();
  const managers: ManagerProcess[] = [];
  const unregister = onTermination(() => killOwnedBy(owner));
  const tokenSecret = storage.tokenSecret;
  const logPath = join(scratch, 'manager.log');
  const log = createWriteStream(logPath, { flags: 'a' });

  const env: ManagerEnv = {
    cp,
    namespace,
    storage,
    model,
    modelGate,
    kubelet,
    core,
    custom,
    baseVersion,
    tokenSecret,
    async startManager(opts = {}) {
      const port = opts.port ?? (await getFreePort());
      const url = `http://127.0.0.1:${port}`;
      const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'manager/main.ts')], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          KUBECONFIG: opts.kubeconfigPath ?? cp.kubeconfigPath,
          [OWNER_ENV]: owner,
          PAGEWRIGHT_MANAGER_HOST: '127.0.0.1',
          PAGEWRIGHT_MANAGER_PORT: String(port),
          PAGEWRIGHT_MANAGER_URL: url,
          PAGEWRIGHT_WATCH_NAMESPACE: namespace,
          PAGEWRIGHT_RUNNER_IMAGE: `${RUNNER_IMAGE}:test`,
          PAGEWRIGHT_STORAGE_URL: storage.url,
          PAGEWRIGHT_STORAGE_ADMIN_TOKEN: storage.adminToken,
          PAGEWRIGHT_TOKEN_SECRET: tokenSecret,
          PAGEWRIGHT_LLM_KEY: model.key,
          PAGEWRIGHT_LLM_URL: model.url,
          PAGEWRIGHT_RUNNER_MEMORY_LIMIT: '768Mi',
          PAGEWRIGHT_RETRY_BASE_SECONDS: '1',
          PAGEWRIGHT_RESYNC_SECONDS: '30',
          PAGEWRIGHT_LOG_LEVEL: 'debug',
          PAGEWRIGHT_RUNNER_ENV: JSON.stringify({
            PAGEWRIGHT_CODEX_REQUEST_RETRIES: '0',
            PAGEWRIGHT_CODEX_STREAM_RETRIES: '0',
            PAGEWRIGHT_KILL_GRACE_MS: '1000',
          }),
          ...opts.env,
        },
      });
      proc.stdout?.pipe(log, { end: false });
      proc.stderr?.pipe(log, { end: false });
      const exited = once(proc, 'exit').then(([code]) => code as number | null);
      const handle: ManagerProcess = {
        url,
        port,
        proc,
        exited,
        logPath,
        async kill(signal = 'SIGTERM') {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
          await exited;
        },
      };
      managers.push(handle);
      await waitFor(
        'manager /readyz',
        async () => {
          if (proc.exitCode !== null) throw new Error(`manager exited with ${proc.exitCode}:\n${await readFile(logPath, 'utf8')}`);
          const res = await request(`${url}/readyz`).catch(() => null);
          await res?.body.dump();
          return res?.statusCode === 200;
        },
        30_000,
        100,
      );
      return handle;
    },
    async getJob(name) {
      return PagewrightJob.parse(await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace, name }));
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
    async diagnostics() {
      const pods = (await core.listNamespacedPod({ namespace })).items;
      const logs = await Promise.all(pods.map(async (p) => `--- pod ${p.metadata?.name} (${p.status?.phase}):\n${(await kubelet.logs(namespace, p.metadata!.name!)).slice(-3000)}`));
      return `--- manager:\n${(await env.managerLogs()).slice(-5000)}\n${logs.join('\n')}`;
    },
    async stop() {
      await Promise.all(managers.map((m) => m.kill('SIGKILL')));
      await kubelet.stop();
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
