/**
 * preview/main.ts's answers to "which job, which site": the PagewrightJob read from the API
 * (common/job-resource.ts); a site's is site-directory.ts's.
 *
 * A page load asks for the job once per file (the review page, its stylesheet, every asset of
 * both previews), so an answer is kept for a moment (JOB_TTL_MS): the job's state on screen is
 * at most that old, and a burst of requests costs one API read.
 */
import type { CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, PLURAL, PagewrightJob, VERSION } from '../common/job-resource.js';
import { REVIEW_API_ROOT } from '../common/review-api.js';
import type { ReviewJob } from './review-job.js';

const JOB_TTL_MS = 2000;
const MEMO_MAX = 1000;

/** The commands the review page shows for a job (the CLI's, and kubectl's where the CLI is not installed). */
export function jobCommands(namespace: string, name: string, siteId: string): ReviewJob['commands'] {
  return {
    approve: [
      `pagewright approve ${name} -n ${namespace}`,
      `kubectl -n ${namespace} patch pwj ${name} --type=merge -p '{"spec":{"publish":true}}'`,
    ],
    rollback: [
      `pagewright sites rollback ${siteId} -n ${namespace}`,
      `echo '{}' | kubectl create --raw ${REVIEW_API_ROOT}/namespaces/${namespace}/sites/${siteId}/rollback -f -`,
    ],
  };
}

/** What the review page needs of a PagewrightJob. */
export function reviewJobOf(raw: unknown): ReviewJob {
  const job = PagewrightJob.parse(raw);
  const { name, namespace } = job.metadata;
  const s = job.status;
  const baseVersion = s.baseVersion ?? job.spec.baseVersion;
  return {
    uid: s.jobId ?? job.metadata.uid,
    name,
    namespace,
    siteId: job.spec.siteId,
    prompt: job.spec.prompt,
    ...(s.phase ? { phase: s.phase } : {}),
    ...(s.reason ? { reason: s.reason } : {}),
    ...(s.summary ? { summary: s.summary } : {}),
    ...(s.usage ? { usage: s.usage } : {}),
    ...(baseVersion ? { baseVersion } : {}),
    ...(s.followUp ? { baseJobUid: s.followUp.jobId } : {}),
    ...(s.outputVersion ? { outputVersion: s.outputVersion } : {}),
    ...(s.diffSummary ? { diffSummary: s.diffSummary } : {}),
    ...(s.checks ? { checks: s.checks } : {}),
    commands: jobCommands(namespace, name, job.spec.siteId),
  };
}

function apiCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

export class KubeJobResolver {
  readonly #api: CustomObjectsApi;
  readonly #memo = new Map<string, { at: number; job: Promise<ReviewJob | null> }>();

  constructor(api: CustomObjectsApi) {
    this.#api = api;
  }

  resolve(namespace: string, name: string): Promise<ReviewJob | null> {
    const key = `${namespace}/${name}`;
    const hit = this.#memo.get(key);
    if (hit && Date.now() - hit.at < JOB_TTL_MS) return hit.job;
    const job = this.#read(namespace, name);
    if (this.#memo.size >= MEMO_MAX) this.#memo.clear();
    this.#memo.set(key, { at: Date.now(), job });
    // a failure is not remembered
    job.catch(() => this.#memo.delete(key));
    return job;
  }

  async #read(namespace: string, name: string): Promise<ReviewJob | null> {
    try {
      return reviewJobOf(await this.#api.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace, name }));
    } catch (err) {
      if (apiCode(err) === 404) return null;
      throw err;
    }
  }
}
