/**
 * A PagewrightJob that ran attempt 1 and succeeded, written straight into the apiserver with its
 * output (and optionally a diff.patch) in storage and its status as the manager records it. The
 * manager is paused (SIGSTOP) while the job is created and given its status, so that it first
 * sees it Succeeded (else it would admit it and start a pod); it is told nothing else.
 */
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, PLURAL, PagewrightJob, VERSION } from '../../common/job-resource.js';
import type { StorageClient } from '../../common/storage-client.js';
import type { ManagerProcess } from './manager-process.js';

const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export interface SucceededJob {
  namespace: string;
  name: string;
  site: string;
  base: string;
  /** The output's tar.gz and the paths it changed. */
  output: Buffer;
  files: string[];
  diff?: string | undefined;
  spec?: Record<string, unknown>;
}

export async function writeSucceededJob(
  d: { custom: CustomObjectsApi; storage: StorageClient; manager: ManagerProcess },
  j: SucceededJob,
): Promise<PagewrightJob> {
  const { custom, storage } = d;
  const ref = { group: GROUP, version: VERSION, plural: PLURAL, namespace: j.namespace };
  d.manager.proc.kill('SIGSTOP');
  try {
    const created = PagewrightJob.parse(
      await custom.createNamespacedCustomObject({
        ...ref,
        body: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: 'PagewrightJob',
          metadata: { name: j.name },
          spec: { siteId: j.site, prompt: 'edit', ...j.spec },
        },
      }),
    );
    const stored = await storage.putJobObject(created.metadata.uid, 'output.tar.gz', j.output);
    if (j.diff) await storage.putJobObject(created.metadata.uid, 'diff.patch', Buffer.from(j.diff));
    const now = new Date().toISOString();
    const status = {
      phase: 'Succeeded',
      runnerPhase: 'completed',
      jobId: created.metadata.uid,
      attempt: 1,
      reportedAttempt: 1,
      startTime: now,
      completionTime: now,
      baseVersion: j.base,
      outputVersion: stored.version,
      filesChanged: 1,
      files: j.files,
      summary: 'edited',
    };
    return PagewrightJob.parse(await custom.patchNamespacedCustomObjectStatus({ ...ref, name: j.name, body: { status } }, MERGE));
  } finally {
    d.manager.proc.kill('SIGCONT');
  }
}
