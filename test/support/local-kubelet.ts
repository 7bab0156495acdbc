/**
 * A small, honest kubelet for tests: it binds pods (there is no kube-scheduler), runs each
 * pod's container as a local process, and reports pod status through the API like a kubelet.
 *
 * What it does: binds unscheduled pods whose schedulerName it serves (pods/binding); resolves
 * env (value, secretKeyRef, configMapKeyRef, fieldRef) from the API; mounts emptyDir, secret
 * and configMap volumes as per-pod temp directories (container paths in env and args are
 * rewritten to them); gives every pod its own loopback IP (127.0.0.N); reports Pending ->
 * Running -> Succeeded/Failed with exit codes and reasons; enforces limits.memory (OOMKilled)
 * and activeDeadlineSeconds (DeadlineExceeded); honours deletion (TERM, grace period, KILL,
 * then removes the pod). Like the real kubelet's sync loop it resyncs every pod periodically, so
 * a pod waiting for a missing Secret starts once the Secret exists. Every pod process carries
 * its pod's marker and its owner (control-plane/owner.ts): stop(), the test process exiting or
 * being interrupted kill them all, and the next start() reaps those of a SIGKILLed run.
 *
 * What a real kubelet does that this does not: no images (an image name maps to a local
 * command), no container isolation (processes share the host's filesystem, users and network
 * namespace; a pod's processes are found by a marker env var instead of a cgroup), no CPU
 * limits, no probes, no restarts (restartPolicy is treated as Never), one container per pod,
 * no init containers, no ephemeral-storage limits, no service-account token volume, no
 * port-forward/exec/logs API, no node heartbeats.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createWriteStream, type WriteStream } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CoreV1Api,
  type Informer,
  type KubeConfig,
  PatchStrategy,
  type V1Container,
  type V1ContainerStatus,
  type V1Pod,
  makeInformer,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { type Logger, silentLogger } from '../../common/logger.js';
import { PROCESS_MARKER_ENV, findMarkedProcesses, killMarkedProcesses, signalMarkedProcesses } from '../../common/process-marker.js';
import { OWNER_ENV, killOwnedBy, onTermination, reapOrphans, selfOwner } from './control-plane/owner.js';
import { KubeletPodEnv } from './local-kubelet-env.js';

export interface PodContext {
  podIP: string;
  podName: string;
  namespace: string;
  uid: string;
}

export interface ImageRuntime {
  /** argv to run for this container (its command/args are passed for mapping). */
  command(container: V1Container): string[];
  /** Container paths -> host paths, applied to env values and argv (prefix match). */
  paths?: Record<string, string>;
  /** Extra env the local process needs (e.g. the address to bind). */
  env?(ctx: PodContext): Record<string, string>;
}

export interface LocalKubeletOptions {
  kubeConfig: KubeConfig;
  nodeName?: string;
  schedulerNames?: string[];
  /** Only pods in this namespace (default: all). */
  namespace?: string;
  /** Image repository (without tag) -> how to run it. */
  images: Record<string, ImageRuntime>;
  logger?: Logger;
  logDir?: string;
  memoryPollMs?: number;
  /** How often every known pod is synced again, as the kubelet's sync loop does (default 5000). */
  resyncMs?: number;
}

interface RunningPod {
  key: string;
  uid: string;
  child: ChildProcess;
  marker: string;
  ip: string;
  dirs: string[];
  startedAt: string;
  exited: Promise<void>;
  /** The Running status patch: the final status must land after it, never before. */
  reportedRunning: Promise<void>;
  done: boolean;
  stopReason: { kind: 'oom' } | { kind: 'deadline' } | { kind: 'deleted' } | null;
  timers: NodeJS.Timeout[];
  log: WriteStream;
}

export class LocalKubelet {
  readonly nodeName: string;
  readonly #o: LocalKubeletOptions;
  readonly #core: CoreV1Api;
  readonly #log: Logger;
  readonly #running = new Map<string, RunningPod>();
  /** Pods this kubelet is done with (finished), by uid, so updates do not restart them. */
  readonly #finished = new Set<string>();
  readonly #chains = new Map<string, Promise<void>>();
  readonly #usedIps = new Set<number>();
  #informer: Informer<V1Pod> | null = null;
  #stopped = false;
  #logDir = '';
  #owner = '';
  #resync: NodeJS.Timeout | null = null;
  #unregisterCleanup: (() => void) | null = null;

  constructor(opts: LocalKubeletOptions) {
    this.#o = opts;
    this.nodeName = opts.nodeName ?? 'pagewright-local';
    this.#core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.#log = opts.logger ?? silentLogger;
  }

  async start(): Promise<void> {
    this.#logDir = this.#o.logDir ?? (await mkdtemp(join(tmpdir(), 'pw-kubelet-logs-')));
    reapOrphans(); // pod processes of a test run that was SIGKILLed
    this.#owner = selfOwner();
    this.#unregisterCleanup = onTermination(() => killOwnedBy(this.#owner));
    await this.#registerNode();
    const ns = this.#o.namespace;
    const path = ns ? `/api/v1/namespaces/${ns}/pods` : '/api/v1/pods';
    const list = ns ? () => this.#core.listNamespacedPod({ namespace: ns }) : () => this.#core.listPodForAllNamespaces();
    const informer = makeInformer<V1Pod>(this.#o.kubeConfig, path, list);
    const enqueue = (pod: V1Pod) => this.#enqueue(pod);
    informer.on('add', enqueue);
    informer.on('update', enqueue);
    informer.on('error', (err: unknown) => {
      if (this.#stopped || (err as Error)?.name === 'AbortError') return;
      // client-node stops an informer on most errors: restart it, never stop watching
      this.#log.warn('pod watch failed, restarting', { error: String(err) });
      setTimeout(() => void (this.#stopped ? undefined : informer.start().catch(() => undefined)), 1000);
    });
    this.#informer = informer;
    await informer.start();
    // level-triggered like the kubelet: retries what failed (a missing Secret, a lost event)
    this.#resync = setInterval(() => informer.list().forEach(enqueue), this.#o.resyncMs ?? 5000);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#resync) clearInterval(this.#resync);
    await this.#informer?.stop();
    await Promise.all(
      [...this.#running.values()].map(async (run) => {
        run.timers.forEach(clearTimeout);
        await killMarkedProcesses(run.marker);
        run.child.kill('SIGKILL');
        await run.exited;
        await Promise.all(run.dirs.map((d) => rm(d, { recursive: true, force: true })));
      }),
    );
    this.#running.clear();
    this.#unregisterCleanup?.();
  }

  /** The container's stdout+stderr so far (for diagnostics in failing tests). */
  async logs(namespace: string, name: string): Promise<string> {
    return readFile(join(this.#logDir, `${namespace}_${name}.log`), 'utf8').catch(() => '');
  }

  /** PIDs of a pod's processes (by its marker). */
  async pids(uid: string): Promise<number[]> {
    return findMarkedProcesses(`pod-${uid}`);
  }

  #enqueue(pod: V1Pod): void {
    const key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
    // one sync at a time per pod, in event order
    const next = (this.#chains.get(key) ?? Promise.resolve()).then(() => this.#sync(pod)).catch((err: unknown) => {
      if (!this.#stopped) this.#log.error('pod sync failed', { pod: key, error: String(err) });
    });
    this.#chains.set(key, next);
    void next.then(() => {
      if (this.#chains.get(key) === next) this.#chains.delete(key);
    });
  }

  async #sync(pod: V1Pod): Promise<void> {
    if (this.#stopped) return;
    const meta = pod.metadata!;
    const key = `${meta.namespace}/${meta.name}`;
    const uid = meta.uid!;
    const mine = pod.spec?.nodeName === this.nodeName;
    if (meta.deletionTimestamp) {
      if (mine) await this.#delete(pod);
      return;
    }
    if (!pod.spec?.nodeName) {
      if ((this.#o.schedulerNames ?? ['default-scheduler']).includes(pod.spec?.schedulerName ?? 'default-scheduler')) await this.#bind(pod);
      return;
    }
    if (!mine || this.#running.has(key) || this.#finished.has(uid)) return;
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') {
      this.#finished.add(uid);
      return;
    }
    await this.#run(pod);
  }

  async #bind(pod: V1Pod): Promise<void> {
    const { name, namespace } = pod.metadata as { name: string; namespace: string };
    try {
      await this.#core.createNamespacedPodBinding({
        namespace,
        name,
        body: { apiVersion: 'v1', kind: 'Binding', metadata: { name }, target: { apiVersion: 'v1', kind: 'Node', name: this.nodeName } },
      });
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err; // 409: already bound
    }
  }

  async #run(pod: V1Pod): Promise<void> {
    const meta = pod.metadata as { name: string; namespace: string; uid: string };
    const key = `${meta.namespace}/${meta.name}`;
    const container = pod.spec!.containers[0]!;
    const runtime = this.#runtimeFor(container.image ?? '');
    if (!runtime) {
      await this.#patchStatus(pod, {
        phase: 'Pending',
        containerStatuses: [waiting(container, 'ErrImagePull', `local kubelet has no runtime for image ${container.image}`)],
      });
      return;
    }
    const ip = this.#allocateIp();
    const ctx: PodContext = { podIP: ip, podName: meta.name, namespace: meta.namespace, uid: meta.uid };
    let podEnv: KubeletPodEnv;
    try {
      podEnv = await KubeletPodEnv.resolve(this.#core, pod, container, ctx, this.nodeName, runtime.paths ?? {});
    } catch (err) {
      this.#releaseIp(ip);
      await this.#patchStatus(pod, { phase: 'Pending', containerStatuses: [waiting(container, 'CreateContainerConfigError', (err as Error).message)] });
      // a real kubelet retries; so do we, on the next update or resync of this pod
      return;
    }
    const marker = `pod-${meta.uid}`;
    // container paths are mapped before the runtime turns the container into host argv: a host
    // path (say /work/...) must never be mistaken for a mount (/work)
    const mapped = { ...container, command: container.command?.map((a) => podEnv.mapPath(a)), args: container.args?.map((a) => podEnv.mapPath(a)) };
    const argv = runtime.command(mapped);
    const log = createWriteStream(join(this.#logDir, `${meta.namespace}_${meta.name}.log`), { flags: 'a' });
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { PATH: process.env.PATH, ...podEnv.env, ...runtime.env?.(ctx), [PROCESS_MARKER_ENV]: marker, [OWNER_ENV]: this.#owner },
      cwd: podEnv.workingDir,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    const startedAt = new Date().toISOString();
    const run: RunningPod = {
      key,
      uid: meta.uid,
      child,
      marker,
      ip,
      dirs: podEnv.dirs,
      startedAt,
      exited: new Promise((r) => child.once('close', () => r())),
      reportedRunning: Promise.resolve(),
      done: false,
      stopReason: null,
      timers: [],
      log,
    };
    this.#running.set(key, run);
    child.once('error', (err) => log.write(`local kubelet: cannot start ${argv[0]}: ${err.message}\n`));
    void run.exited.then(() => this.#onExit(pod, container, run));
    // before the status patch: a process that exits meanwhile must find its timers to clear
    this.#watchLimits(pod, run);
    run.reportedRunning = this.#patchStatus(pod, {
      phase: 'Running',
      hostIP: '127.0.0.1',
      podIP: ip,
      podIPs: [{ ip }],
      startTime: pod.status?.startTime ?? new Date(startedAt),
      conditions: conditions(true),
      containerStatuses: [{ ...baseStatus(container), ready: true, started: true, state: { running: { startedAt: new Date(startedAt) } } }],
    });
    await run.reportedRunning;
  }

  #watchLimits(pod: V1Pod, run: RunningPod): void {
    const deadline = pod.spec?.activeDeadlineSeconds;
    if (deadline) {
      const startedMs = new Date(pod.status?.startTime ?? run.startedAt).getTime();
      run.timers.push(
        setTimeout(() => {
          run.stopReason ??= { kind: 'deadline' };
          // the kubelet gives a pod past its deadline its grace period, as on deletion
          void this.#terminate(run, pod.spec?.terminationGracePeriodSeconds ?? 30);
        }, Math.max(0, startedMs + deadline * 1000 - Date.now())),
      );
    }
    const limit = parseQuantity(pod.spec?.containers[0]?.resources?.limits?.memory);
    if (limit !== null) {
      const poll = setInterval(() => {
        void rssOf(run.marker).then((rss) => {
          if (rss > limit && !run.stopReason) {
            run.stopReason = { kind: 'oom' };
            void killMarkedProcesses(run.marker);
          }
        });
      }, this.#o.memoryPollMs ?? 250);
      run.timers.push(poll);
      void run.exited.then(() => clearInterval(poll));
    }
  }

  async #onExit(pod: V1Pod, container: V1Container, run: RunningPod): Promise<void> {
    run.done = true;
    run.timers.forEach(clearTimeout);
    // the container is gone: so is everything it started (a cgroup would see to that)
    await killMarkedProcesses(run.marker);
    run.log.end();
    const code = run.child.exitCode ?? (run.child.signalCode ? 128 + signalNumber(run.child.signalCode) : 1);
    this.#running.delete(run.key);
    this.#finished.add(run.uid);
    if (run.stopReason?.kind === 'deleted') return; // #delete finishes the pod
    const finishedAt = new Date();
    // a merge patch of Running that lands after the final status would resurrect the pod (the
    // apiserver accepts Succeeded -> Running)
    await run.reportedRunning.catch(() => undefined);
    const oom = run.stopReason?.kind === 'oom';
    const deadline = run.stopReason?.kind === 'deadline';
    const terminated = {
      exitCode: oom ? 137 : code,
      reason: oom ? 'OOMKilled' : code === 0 ? 'Completed' : 'Error',
      startedAt: new Date(run.startedAt),
      finishedAt,
    };
    await this.#patchStatus(pod, {
      phase: code === 0 && !oom && !deadline ? 'Succeeded' : 'Failed',
      ...(deadline ? { reason: 'DeadlineExceeded', message: `Pod was active on the node longer than the specified deadline` } : {}),
      conditions: conditions(false),
      containerStatuses: [{ ...baseStatus(container), ready: false, started: false, state: { terminated } }],
    }).catch((err: unknown) => this.#log.warn('final status not written', { pod: run.key, error: String(err) }));
    this.#releaseIp(run.ip);
    await Promise.all(run.dirs.map((d) => rm(d, { recursive: true, force: true })));
  }

  async #delete(pod: V1Pod): Promise<void> {
    const meta = pod.metadata as { name: string; namespace: string };
    const run = this.#running.get(`${meta.namespace}/${meta.name}`);
    if (run) {
      run.stopReason ??= { kind: 'deleted' };
      await this.#terminate(run, pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30);
      await run.exited;
      this.#releaseIp(run.ip);
      await Promise.all(run.dirs.map((d) => rm(d, { recursive: true, force: true })));
    }
    try {
      await this.#core.deleteNamespacedPod({ name: meta.name, namespace: meta.namespace, gracePeriodSeconds: 0 });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
    }
  }

  /** TERM to every process of the pod, then KILL after the grace period. */
  async #terminate(run: RunningPod, graceSeconds: number): Promise<void> {
    if (run.done) return; // its process group id may belong to someone else by now
    try {
      process.kill(-run.child.pid!, 'SIGTERM');
    } catch {
      // group gone
    }
    await signalMarkedProcesses(run.marker, 'SIGTERM');
    const exited = await settlesWithin(run.exited, graceSeconds * 1000);
    if (!exited) {
      try {
        process.kill(-run.child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await killMarkedProcesses(run.marker);
  }

  #runtimeFor(image: string): ImageRuntime | undefined {
    const repo = image.replace(/@sha256:[a-f0-9]+$/, '').replace(/:[^/:]+$/, '');
    for (const [name, runtime] of Object.entries(this.#o.images)) {
      if (repo === name || repo.endsWith(`/${name}`)) return runtime;
    }
    return undefined;
  }

  #allocateIp(): string {
    for (let n = 2; n < 250; n++) {
      if (!this.#usedIps.has(n)) {
        this.#usedIps.add(n);
        return `127.0.0.${n}`;
      }
    }
    throw new Error('local kubelet is out of loopback addresses');
  }

  #releaseIp(ip: string): void {
    this.#usedIps.delete(Number(ip.split('.')[3]));
  }

  async #patchStatus(pod: V1Pod, status: Record<string, unknown>): Promise<void> {
    if (this.#stopped) return;
    const { name, namespace } = pod.metadata as { name: string; namespace: string };
    try {
      await this.#core.patchNamespacedPodStatus({ name, namespace, body: { status } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err; // deleted meanwhile
    }
  }

  async #registerNode(): Promise<void> {
    try {
      await this.#core.createNode({ body: { apiVersion: 'v1', kind: 'Node', metadata: { name: this.nodeName, labels: { 'kubernetes.io/hostname': this.nodeName } } } });
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
    }
    const now = new Date();
    await this.#core.patchNodeStatus(
      {
        name: this.nodeName,
        body: {
          status: {
            conditions: [{ type: 'Ready', status: 'True', reason: 'LocalKubeletReady', message: 'pagewright local test kubelet', lastHeartbeatTime: now, lastTransitionTime: now }],
            addresses: [{ type: 'InternalIP', address: '127.0.0.1' }],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
}

function baseStatus(container: V1Container): V1ContainerStatus {
  return { name: container.name, image: container.image ?? '', imageID: '', ready: false, restartCount: 0 };
}

function waiting(container: V1Container, reason: string, message: string): V1ContainerStatus {
  return { ...baseStatus(container), state: { waiting: { reason, message } } };
}

function conditions(ready: boolean) {
  const now = new Date();
  const c = (type: string, status: boolean) => ({ type, status: status ? 'True' : 'False', lastTransitionTime: now });
  return [c('PodScheduled', true), c('Initialized', true), c('ContainersReady', ready), c('Ready', ready)];
}

/** "512Mi" -> bytes; null when absent or unparseable. */
export function parseQuantity(q: string | undefined): number | null {
  if (!q) return null;
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) return null;
  const mult: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Math.round(Number(m[1]) * (m[2] ? mult[m[2]]! : 1));
}

async function rssOf(marker: string): Promise<number> {
  let total = 0;
  for (const pid of await findMarkedProcesses(marker)) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
    if (kb) total += Number(kb) * 1024;
  }
  return total;
}

function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 1;
}

/** Whether `p` settles within `ms`; the timer is cleared either way, so it never holds the process open. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
