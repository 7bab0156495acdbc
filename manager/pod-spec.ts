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
 */
import type { V1Container, V1EnvVar, V1OwnerReference, V1Pod, V1Secret, V1SecurityContext } from '@kubernetes/client-node';
import { AGENT_COMMAND, RUNNER_COMMAND, RUNNER_SECRETS, runnerEnvironment } from '../common/runner-launch.js';
import type { RunnerJobInput } from '../common/schemas.js';
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
/** The runner container's own resources: it streams, it does not hold sites in memory. */
const RUNNER_CONTAINER_RESOURCES = { requests: { cpu: '50m', memory: '128Mi' }, limits: { cpu: '1', memory: '512Mi' } };

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
function runnerJob(job: PagewrightJob, attempt: number, cfg: Pick<PodSpecConfig, 'codexModel'>): RunnerJobInput {
  return {
    job_id: job.metadata.uid,
    site_id: job.spec.siteId,
    prompt: job.spec.prompt,
    ...(job.spec.baseVersion ? { base_version: job.spec.baseVersion } : {}),
    model: job.spec.model ?? cfg.codexModel,
    timeout_seconds: job.spec.timeoutSeconds,
    attempt,
  };
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

export function buildPod(job: PagewrightJob, attempt: number, cfg: PodSpecConfig): V1Pod {
  const env: V1EnvVar[] = runnerEnvironment({
    job: runnerJob(job, attempt, cfg),
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
    command: [...AGENT_COMMAND],
    // a native sidecar: started before the runner, stopped by the kubelet when the runner exits.
    // No probe: it listens on the pod's loopback only (a kubelet probe comes from outside), and
    // the runner waits for it (runner/agent-client.ts)
    restartPolicy: 'Always',
    env: [
      { name: 'PAGEWRIGHT_AGENT_PORT', value: String(AGENT_PORT) },
      { name: 'PAGEWRIGHT_WORK_DIR', value: '/work' },
      // codex and the agent's tools write under HOME; the root filesystem is read-only
      { name: 'HOME', value: '/tmp' },
    ],
    resources: {
      requests: { cpu: cfg.runnerCpuRequest, memory: cfg.runnerMemoryRequest },
      limits: { cpu: cfg.runnerCpuLimit, memory: cfg.runnerMemoryLimit },
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
          resources: RUNNER_CONTAINER_RESOURCES,
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
        { name: 'work', emptyDir: { sizeLimit: cfg.runnerWorkSizeLimit } },
        { name: 'runner-private', emptyDir: { sizeLimit: cfg.runnerWorkSizeLimit } },
        { name: 'runner-tmp', emptyDir: { sizeLimit: '256Mi' } },
        { name: 'agent-tmp', emptyDir: { sizeLimit: '1Gi' } },
      ],
    },
  };
}
