/**
 * The runner pod of one attempt and the per-job Secret it reads its credentials from. Pure: the
 * same job and attempt always give the same names and spec, so creating them is idempotent across
 * manager restarts. The pod meets the Pod Security Standard "restricted" (tested against the
 * apiserver's admission in test/integration/deploy.test.ts).
 */
import type { V1OwnerReference, V1Pod, V1Secret } from '@kubernetes/client-node';
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
} from './resource.js';

export const RUNNER_UID = 10001;
export const SECRET_KEY_TOKEN = 'job-token';
export const SECRET_KEY_LLM = 'llm-key';

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
  | 'llmUrl'
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

export function secretName(job: PagewrightJob): string {
  return `${baseName(job)}-token`;
}

export function ownerReference(job: PagewrightJob): V1OwnerReference {
  return { apiVersion: API_VERSION, kind: KIND, name: job.metadata.name, uid: job.metadata.uid, controller: true, blockOwnerDeletion: true };
}

function labels(job: PagewrightJob): Record<string, string> {
  return { [LABEL_JOB]: job.metadata.uid, [LABEL_SITE]: job.spec.siteId, [LABEL_MANAGED_BY]: MANAGED_BY };
}

export function buildSecret(job: PagewrightJob, jobToken: string, llmKey: string): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: secretName(job), namespace: job.metadata.namespace, labels: labels(job), ownerReferences: [ownerReference(job)] },
    type: 'Opaque',
    stringData: { [SECRET_KEY_TOKEN]: jobToken, [SECRET_KEY_LLM]: llmKey },
  };
}

/** The runner's PAGEWRIGHT_JOB: the job id is the resource's uid (unique across re-creations). */
export function runnerJob(job: PagewrightJob, attempt: number, cfg: Pick<PodSpecConfig, 'codexModel'>): RunnerJobInput {
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

export function buildPod(job: PagewrightJob, attempt: number, cfg: PodSpecConfig): V1Pod {
  const secret = secretName(job);
  const fromSecret = (key: string) => ({ secretKeyRef: { name: secret, key } });
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
      terminationGracePeriodSeconds: 15,
      ...(cfg.runnerSchedulerName ? { schedulerName: cfg.runnerSchedulerName } : {}),
      securityContext: {
        runAsNonRoot: true,
        runAsUser: RUNNER_UID,
        runAsGroup: RUNNER_UID,
        fsGroup: RUNNER_UID,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [
        {
          name: 'runner',
          image: cfg.runnerImage,
          imagePullPolicy: cfg.runnerImagePullPolicy,
          command: ['node', '/app/dist/runner/bundle.mjs'],
          ports: [{ name: 'http', containerPort: cfg.runnerPort }],
          env: [
            { name: 'PAGEWRIGHT_WORKER_PORT', value: String(cfg.runnerPort) },
            { name: 'PAGEWRIGHT_WORK_DIR', value: '/work' },
            { name: 'PAGEWRIGHT_JOB', value: JSON.stringify(runnerJob(job, attempt, cfg)) },
            { name: 'PAGEWRIGHT_JOB_TOKEN', valueFrom: fromSecret(SECRET_KEY_TOKEN) },
            { name: 'PAGEWRIGHT_LLM_KEY', valueFrom: fromSecret(SECRET_KEY_LLM) },
            { name: 'PAGEWRIGHT_LLM_URL', value: cfg.llmUrl },
            { name: 'PAGEWRIGHT_MANAGER_URL', value: cfg.managerUrl },
            { name: 'PAGEWRIGHT_STORAGE_URL', value: cfg.storageUrl },
            { name: 'PAGEWRIGHT_CODEX_MODEL', value: job.spec.model ?? cfg.codexModel },
            // the image's layout (Dockerfile.runner), spelled out so the contract is visible here
            { name: 'PAGEWRIGHT_CODEX_BINARY', value: '/usr/local/bin/codex' },
            { name: 'PAGEWRIGHT_INSTRUCTIONS_PATH', value: '/.codex/instructions.md' },
            // codex and its tools write their state under HOME; the root filesystem is read-only
            { name: 'HOME', value: '/tmp' },
            ...Object.entries(cfg.runnerEnv).map(([name, value]) => ({ name, value })),
          ],
          resources: {
            requests: { cpu: cfg.runnerCpuRequest, memory: cfg.runnerMemoryRequest },
            limits: { cpu: cfg.runnerCpuLimit, memory: cfg.runnerMemoryLimit },
          },
          readinessProbe: { httpGet: { path: '/health', port: 'http' }, periodSeconds: 5 },
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            runAsNonRoot: true,
            capabilities: { drop: ['ALL'] },
            seccompProfile: { type: 'RuntimeDefault' },
          },
          volumeMounts: [
            { name: 'work', mountPath: '/work' },
            { name: 'tmp', mountPath: '/tmp' },
          ],
        },
      ],
      volumes: [
        { name: 'work', emptyDir: { sizeLimit: cfg.runnerWorkSizeLimit } },
        { name: 'tmp', emptyDir: { sizeLimit: '256Mi' } },
      ],
    },
  };
}
