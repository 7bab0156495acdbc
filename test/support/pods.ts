/** Helpers for tests that watch pods on the test control plane. */
import type { CoreV1Api, V1Container, V1Pod } from '@kubernetes/client-node';
import { waitFor } from './processes.js';

export async function waitForPod(
  core: CoreV1Api,
  namespace: string,
  name: string,
  what: string,
  predicate: (pod: V1Pod) => boolean,
  timeoutMs = 30_000,
): Promise<V1Pod> {
  return waitFor(
    `pod ${namespace}/${name}: ${what}`,
    async () => {
      const pod = await core.readNamespacedPod({ name, namespace }).catch(() => null);
      return pod && predicate(pod) ? pod : null;
    },
    timeoutMs,
    100,
  );
}

export async function waitForPodGone(core: CoreV1Api, namespace: string, name: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    `pod ${namespace}/${name} to be deleted`,
    async () =>
      await core.readNamespacedPod({ name, namespace }).then(
        () => false,
        (e: { code?: number }) => e.code === 404,
      ),
    timeoutMs,
    100,
  );
}

/** The container securityContext Pod Security `restricted` requires, as the runner image runs (uid 10001). */
export const RESTRICTED_CONTAINER = {
  securityContext: {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    runAsUser: 10001,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  },
} satisfies Partial<V1Container>;
