/**
 * The runner pod of one attempt and the Secret with its credentials. Pure: the same job and
 * attempt always give the same names and spec, so creating them is idempotent across manager
 * restarts. The pod meets the Pod Security Standard "restricted" (tested against the apiserver's
 * admission in test/node/deploy.test.ts).
 *
 * The trust split (DESIGN "Security"): two containers of the runner image, two uids, one shared
 * work volume.
 *   runner  uid 10001: fetches, unpacks, checks and packs the site, uploads, calls back. It alone
 *           holds the runner credential (storage writes, callbacks, /kill), as env from the
 *           attempt's Secret, and its own volume (/runner: the stash of .codex/, the packed
 *           output, the log), which the agent container does not mount.
 *   agent   uid 10002 (group 10001, to share the site): a native sidecar (restartPolicy Always
 *           init container, stopped by the kubelet once the runner exits) that runs codex when
 *           the runner asks (runner/agent-server.ts, on 127.0.0.1). It holds no secret: the
 *           runner hands it the gateway credential for each run, and that credential only lets
 *           it talk to the model, for this attempt, within the job's budget.
 * The containers do not share a process namespace, so the agent cannot read the runner's
 * environment; its uid cannot read the runner's files. No LLM key is anywhere in the pod.
 *
 * Limits that hold at the moment they are hit (README "Runner pod limits"), because the agent
 * writes fast (measured on the test node: 1 GiB into a tmpfs in about 1 s; 688 MB/s to the dev
 * cluster's disk, issue 16) and the kubelet only looks at a volume's use now and then:
 *   - everything the agent can write is memory-backed and sized: the work dir (tmpfs of
 *     PAGEWRIGHT_RUNNER_WORK_SIZE_LIMIT) and its /tmp (AGENT_TMP_SIZE). The kernel refuses a write
 *     past the size with ENOSPC. A disk-backed emptyDir's sizeLimit is only an eviction, after the
 *     fact: measured, 1 GiB went into a 256Mi one without an error, and the pod was evicted 15 to
 *     110 s later (pinned in test/node/limits.test.ts);
 *   - the price: tmpfs pages are memory, charged to the memory cgroup of the container that
 *     writes them. So each container's memory limit adds the volumes it can write: the agent's
 *     is PAGEWRIGHT_RUNNER_MEMORY_LIMIT (codex and its tools) + the work dir + its /tmp; the
 *     runner's is its own 512Mi + the work dir (it unpacks the site there). Were a limit below
 *     what the container may write, the memory cgroup would fill before the tmpfs and the kernel
 *     would OOM-kill a process (pinned: a 1Gi tmpfs in a 128Mi container: OOMKilled, no ENOSPC).
 *     Limits, not requests: scheduling still counts the requests; a pod that fills its work dir
 *     uses that much more of the node's memory, and is first in line if the node runs short;
 *   - one file the agent can reach is on the node's disk whatever the volumes: the kubelet's
 *     /dev/termination-log (mode 0666, read-write). So the agent container starts under a small
 *     init (AGENT_INIT) that caps every file its processes write at PAGEWRIGHT_RUNNER_MAX_FILE_SIZE
 *     (RLIMIT_FSIZE, a hard limit the agent cannot raise), and reaps orphans;
 *   - processes: a pod cannot carry a pids limit itself; the kubelet's podPidsLimit (README: what
 *     a cluster must set) bounds the whole pod, both containers.
 * The runner's own volumes stay on disk: the agent cannot write them, and each of the runner's
 * own writes is bounded by its own rules (the input by storage's artifact limit, the output by
 * the output check, the log by the cap on what it keeps of the agent's output).
 */
import type { V1Container, V1EnvVar, V1OwnerReference, V1Pod, V1Secret, V1SecurityContext } from '@kubernetes/client-node';
import { AGENT_COMMAND, RUNNER_COMMAND, RUNNER_SECRETS, runnerEnvironment } from '../common/runner-launch.js';
import type { CheckSettings, PathRules, RunnerJobInput } from '../common/schemas.js';
import type { ManagerConfig } from './config.js';
import {
  API_VERSION,
  KIND,
  LABEL_ATTEMPT,
  LABEL_JOB,
  LABEL_MANAGED_BY,
  LABEL_SITE,
  MANAGED_BY,
  type PagewrightJob,
} from '../common/job-resource.js';

const RUNNER_UID = 10001;
const AGENT_UID = 10002;
/** The agent server's port, on the pod's loopback only. */
const AGENT_PORT = 8083;
export const SECRET_KEY_TOKEN = RUNNER_SECRETS.runnerToken;
export const SECRET_KEY_GATEWAY = RUNNER_SECRETS.gatewayCredential;
/** The runner container's own resources: it streams, it does not hold sites in memory. The work dir's pages it writes come on top. */
const RUNNER_CONTAINER_RESOURCES = { requests: { cpu: '50m', memory: '128Mi' }, limits: { cpu: '1', memory: '512Mi' } };
/** The agent's /tmp: memory-backed like the work dir, and small (codex's and the tools' scratch). */
const AGENT_TMP_SIZE = '256Mi';

/**
 * PID 1 of the agent container (bash, from the image), then the agent server as its child:
 * - `ulimit -f`: RLIMIT_FSIZE, soft and hard, in KiB, for every process of the container;
 * - it reaps every orphan: commands codex started in their own session are re-parented to PID 1
 *   when their parent dies, and node (the agent server) never reaps a child it did not spawn.
 *   Killed, they would stay zombies, each holding one of the pod's pids until the pod ends: after
 *   a fork bomb, the whole podPidsLimit, and neither container could start a thread or a process
 *   (measured with docker, a bomb in a container with a pids limit of 300, killed: 289 zombies
 *   left under node as PID 1, none under bash; on the real node, 29 pids left after a bomb);
 * - it tells the agent server (PAGEWRIGHT_AGENT_INIT) that it is the container's only other
 *   process, so that stopping a run may kill everything else in the container at once;
 * - it passes SIGTERM (the kubelet stopping the sidecar) on to the agent server, and exits with
 *   its status. PID 1 ignores signals it has no handler for, so the agent cannot kill it; when
 *   the agent server dies, PID 1 exits and the kernel kills what is left in the container.
 */
const AGENT_INIT = [
  'ulimit -f "$PAGEWRIGHT_AGENT_MAX_FILE_KIB" || exit 70',
  // the agent server, told that it owns this container (runner/agent-server.ts: kill(-1))
  'PAGEWRIGHT_AGENT_INIT=pod "$@" &',
  'child=$!',
  'trap \'kill -TERM "$child" 2>/dev/null\' TERM INT HUP',
  'while :; do wait "$child"; rc=$?; kill -0 "$child" 2>/dev/null || exit "$rc"; done',
].join('\n');

const BINARY_SUFFIX: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
const DECIMAL_SUFFIX: Record<string, number> = { m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** Bytes of a memory or storage quantity as manager/config.ts accepts them ("512Mi", "1.5Gi", "2G"), rounded up. */
export function quantityBytes(quantity: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$/.exec(quantity);
  const scale = m ? (BINARY_SUFFIX[m[2] ?? ''] ?? DECIMAL_SUFFIX[m[2] ?? '']) : undefined;
  if (!m || scale === undefined) throw new Error(`not a Kubernetes quantity: ${quantity}`);
  return Math.ceil(Number(m[1]) * scale);
}

/** The sum of quantities, in Mi when it is a whole number of them (as a reader writes it), else in bytes. */
export function addQuantities(...quantities: string[]): string {
  const bytes = quantities.reduce((sum, q) => sum + quantityBytes(q), 0);
  return bytes % 2 ** 20 === 0 ? `${bytes / 2 ** 20}Mi` : String(bytes);
}

export type PodSpecConfig = Pick<
  ManagerConfig,
  | 'runnerImage'
  | 'runnerImagePullPolicy'
  | 'runnerPort'
  | 'runnerCpuRequest'
  | 'runnerCpuLimit'
  | 'runnerMemoryRequest'
  | 'runnerMemoryLimit'
  | 'runnerWorkSizeLimit'
  | 'runnerMaxFileSize'
  | 'runnerEnv'
  | 'runnerSchedulerName'
  | 'podDeadlineSlackSeconds'
  | 'managerUrl'
  | 'storageUrl'
  | 'gatewayUrl'
  | 'codexModel'
>;

/** A readable, unique, DNS-safe prefix: the job's name (trimmed) and the start of its uid. */
function baseName(job: PagewrightJob): string {
  const name = job.metadata.name.slice(0, 44).replace(/[.-]+$/, '');
  return `${name}-${job.metadata.uid.slice(0, 8)}`;
}

export function podName(job: PagewrightJob, attempt: number): string {
  return `${baseName(job)}-a${attempt}`;
}

/** One Secret per attempt: its credentials die with the attempt. */
export function secretName(job: PagewrightJob, attempt: number): string {
  return `${baseName(job)}-a${attempt}-creds`;
}

function ownerReference(job: PagewrightJob): V1OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: job.metadata.name,
    uid: job.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

function labels(job: PagewrightJob): Record<string, string> {
  return { [LABEL_JOB]: job.metadata.uid, [LABEL_SITE]: job.spec.siteId, [LABEL_MANAGED_BY]: MANAGED_BY };
}

export function buildSecret(
  job: PagewrightJob,
  attempt: number,
  credentials: { runnerToken: string; gatewayCredential: string },
): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: secretName(job, attempt),
      namespace: job.metadata.namespace,
      labels: { ...labels(job), [LABEL_ATTEMPT]: String(attempt) },
      ownerReferences: [ownerReference(job)],
    },
    type: 'Opaque',
    stringData: { [SECRET_KEY_TOKEN]: credentials.runnerToken, [SECRET_KEY_GATEWAY]: credentials.gatewayCredential },
  };
}

/** The runner's PAGEWRIGHT_JOB: the job id is the resource's uid (unique across re-creations). */
function runnerJob(job: PagewrightJob, attempt: number, cfg: Pick<PodSpecConfig, 'codexModel'>, site: AttemptSite): RunnerJobInput {
  return {
    job_id: job.metadata.uid,
    site_id: job.spec.siteId,
    prompt: job.spec.prompt,
    ...(job.spec.baseVersion ? { base_version: job.spec.baseVersion } : {}),
    // a follow-up edits the output it follows (status.followUp, fixed at its first attempt)
    ...(job.status.followUp
      ? {
          base_version: job.status.followUp.version,
          follow_up: { job_id: job.status.followUp.jobId, version: job.status.followUp.version, thread_id: job.status.followUp.threadId },
        }
      : {}),
    model: job.spec.model ?? cfg.codexModel,
    timeout_seconds: job.spec.timeoutSeconds,
    attempt,
    ...(site.pathRules ? { path_rules: site.pathRules } : {}),
    ...(site.checks ? { checks: site.checks } : {}),
  };
}

/** What the job's PagewrightSite gives its attempt (manager/sites/): its path rules and checks. */
export interface AttemptSite {
  pathRules?: PathRules;
  checks?: CheckSettings;
}

function restricted(uid: number): V1SecurityContext {
  return {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: RUNNER_UID,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

export function buildPod(job: PagewrightJob, attempt: number, cfg: PodSpecConfig, site: AttemptSite = {}): V1Pod {
  const env: V1EnvVar[] = runnerEnvironment({
    job: runnerJob(job, attempt, cfg, site),
    port: cfg.runnerPort,
    workDir: '/work',
    privateDir: '/runner',
    agentUrl: `http://127.0.0.1:${AGENT_PORT}`,
    // the model is reached through the gateway: the "key" is this attempt's gateway credential
    llmUrl: cfg.gatewayUrl,
    managerUrl: cfg.managerUrl,
    storageUrl: cfg.storageUrl,
    model: job.spec.model ?? cfg.codexModel,
    // the image's layout (Dockerfile.runner), spelled out so the contract is visible here
    codexBinary: '/usr/local/bin/codex',
    instructionsPath: '/.codex/instructions.md',
    // codex and its tools write their state under HOME; the root filesystem is read-only. Then
    // the cluster's extra runner env (PAGEWRIGHT_RUNNER_ENV), names as given
    extra: { HOME: '/tmp', ...cfg.runnerEnv },
  }).map((e) => ('secret' in e ? { name: e.name, valueFrom: { secretKeyRef: { name: secretName(job, attempt), key: e.secret } } } : e));
  const agent: V1Container = {
    name: 'agent',
    image: cfg.runnerImage,
    imagePullPolicy: cfg.runnerImagePullPolicy,
    command: ['/bin/bash', '-c', AGENT_INIT, 'agent-init', ...AGENT_COMMAND],
    // a native sidecar: started before the runner, stopped by the kubelet when the runner exits.
    // No probe: it listens on the pod's loopback only (a kubelet probe comes from outside), and
    // the runner waits for it (runner/agent-launcher.ts)
    restartPolicy: 'Always',
    env: [
      { name: 'PAGEWRIGHT_AGENT_PORT', value: String(AGENT_PORT) },
      { name: 'PAGEWRIGHT_WORK_DIR', value: '/work' },
      // codex and the agent's tools write under HOME; the root filesystem is read-only
      { name: 'HOME', value: '/tmp' },
      // read by AGENT_INIT (ulimit -f counts KiB)
      { name: 'PAGEWRIGHT_AGENT_MAX_FILE_KIB', value: String(Math.max(1, Math.floor(quantityBytes(cfg.runnerMaxFileSize) / 1024))) },
    ],
    resources: {
      requests: { cpu: cfg.runnerCpuRequest, memory: cfg.runnerMemoryRequest },
      // codex and its tools, plus every page of the two memory-backed volumes it can fill
      limits: { cpu: cfg.runnerCpuLimit, memory: addQuantities(cfg.runnerMemoryLimit, cfg.runnerWorkSizeLimit, AGENT_TMP_SIZE) },
    },
    securityContext: restricted(AGENT_UID),
    volumeMounts: [
      { name: 'work', mountPath: '/work' },
      { name: 'agent-tmp', mountPath: '/tmp' },
    ],
  };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: podName(job, attempt),
      namespace: job.metadata.namespace,
      labels: { ...labels(job), [LABEL_ATTEMPT]: String(attempt), 'app.kubernetes.io/name': 'pagewright-runner' },
      ownerReferences: [ownerReference(job)],
    },
    spec: {
      restartPolicy: 'Never',
      activeDeadlineSeconds: job.spec.timeoutSeconds + cfg.podDeadlineSlackSeconds,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      // the default, spelled out: the agent must not see the runner's processes and their environment
      shareProcessNamespace: false,
      terminationGracePeriodSeconds: 15,
      ...(cfg.runnerSchedulerName ? { schedulerName: cfg.runnerSchedulerName } : {}),
      securityContext: {
        runAsNonRoot: true,
        runAsUser: RUNNER_UID,
        runAsGroup: RUNNER_UID,
        fsGroup: RUNNER_UID,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      initContainers: [agent],
      containers: [
        {
          name: 'runner',
          image: cfg.runnerImage,
          imagePullPolicy: cfg.runnerImagePullPolicy,
          command: [...RUNNER_COMMAND],
          ports: [{ name: 'http', containerPort: cfg.runnerPort }],
          env,
          resources: {
            requests: RUNNER_CONTAINER_RESOURCES.requests,
            // the site it unpacks into the memory-backed work dir is charged to it
            limits: {
              ...RUNNER_CONTAINER_RESOURCES.limits,
              memory: addQuantities(RUNNER_CONTAINER_RESOURCES.limits.memory, cfg.runnerWorkSizeLimit),
            },
          },
          readinessProbe: { httpGet: { path: '/health', port: 'http' }, periodSeconds: 5 },
          securityContext: restricted(RUNNER_UID),
          volumeMounts: [
            { name: 'work', mountPath: '/work' },
            { name: 'runner-private', mountPath: '/runner' },
            { name: 'runner-tmp', mountPath: '/tmp' },
          ],
        },
      ],
      volumes: [
        // what the agent can write: tmpfs, so the size is a limit at write time (see the header)
        { name: 'work', emptyDir: { medium: 'Memory', sizeLimit: cfg.runnerWorkSizeLimit } },
        { name: 'agent-tmp', emptyDir: { medium: 'Memory', sizeLimit: AGENT_TMP_SIZE } },
        // the runner's alone, on disk; the sizeLimit is the kubelet's backstop
        { name: 'runner-private', emptyDir: { sizeLimit: cfg.runnerWorkSizeLimit } },
        { name: 'runner-tmp', emptyDir: { sizeLimit: '256Mi' } },
      ],
    },
  };
}
