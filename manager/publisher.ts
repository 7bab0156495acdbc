/**
 * The manager's side of storage for a job: the runner's manifest when its callback was lost,
 * sealing an attempt's writes once it has ended, publishing exactly the output the runner
 * reported, and deleting a job's outputs with the job.
 */
import type { FailureReason } from '../common/errors.js';
import type { PagewrightJob } from '../common/job-resource.js';
import { JobManifest, type JobResult } from '../common/schemas.js';
import { publishBases } from './follow-up.js';
import { type StorageClient, StorageRequestError } from '../common/storage-client.js';

export type PublishOutcome = { ok: true; version: string } | { ok: false; reason: FailureReason; message: string };

export interface Publisher {
  /** The attempt's result from its manifest in storage, or null when there is none for it. */
  recoveredResult(job: PagewrightJob, attempt: number): Promise<JobResult | null>;
  seal(job: PagewrightJob, attempt: number): Promise<void>;
  publish(job: PagewrightJob): Promise<PublishOutcome>;
  deleteOutputs(job: PagewrightJob): Promise<void>;
}

/**
 * Why a publish of the job's reported output must be refused for its checks (null: it may go
 * on): ChecksPassed is False, and neither the job (spec.publishAnyway) nor its site
 * (spec.checks.publishAnyway) says to publish anyway.
 */
export function checksRefusal(job: PagewrightJob, sitePublishesAnyway: boolean): { reason: 'ChecksFailed'; message: string } | null {
  const c = job.status.conditions?.find((x) => x.type === 'ChecksPassed');
  if (c?.status !== 'False' || job.spec.publishAnyway || sitePublishesAnyway) return null;
  return {
    reason: 'ChecksFailed',
    message: `the output's checks failed (${c.message ?? 'see status.checks'}); spec.publishAnyway publishes it anyway`,
  };
}

/**
 * Every publish, at the end of a job or on approval, goes through the checks first: one gate
 * for both paths. The site's setting is read when the publish happens, so a site changed
 * after the job ran decides.
 */
export class CheckedPublisher implements Publisher {
  constructor(
    private readonly inner: Publisher,
    private readonly sitePublishesAnyway: (job: PagewrightJob) => boolean,
  ) {}

  recoveredResult(job: PagewrightJob, attempt: number): Promise<JobResult | null> {
    return this.inner.recoveredResult(job, attempt);
  }

  seal(job: PagewrightJob, attempt: number): Promise<void> {
    return this.inner.seal(job, attempt);
  }

  async publish(job: PagewrightJob): Promise<PublishOutcome> {
    const refused = checksRefusal(job, this.sitePublishesAnyway(job));
    if (refused) return { ok: false, ...refused };
    return this.inner.publish(job);
  }

  deleteOutputs(job: PagewrightJob): Promise<void> {
    return this.inner.deleteOutputs(job);
  }
}

export class StoragePublisher implements Publisher {
  constructor(private readonly storage: StorageClient) {}

  async recoveredResult(job: PagewrightJob, attempt: number): Promise<JobResult | null> {
    let manifest: JobManifest;
    try {
      const download = await this.storage.getJobObject(job.metadata.uid, 'manifest.json');
      manifest = JobManifest.parse(await download.body.json());
    } catch (err) {
      if (err instanceof StorageRequestError && err.status === 404) return null;
      throw err; // storage down: retried with backoff, the pod stays where it is
    }
    return manifest.attempt === attempt ? manifest.result : null;
  }

  async seal(job: PagewrightJob, attempt: number): Promise<void> {
    await this.storage.seal(job.metadata.uid, attempt);
  }

  /** Storage checks the stored output is that version and passes the archive rules, and compares-and-swaps the site. */
  async publish(job: PagewrightJob): Promise<PublishOutcome> {
    const { uid } = job.metadata;
    const output = job.status.outputVersion;
    let base = job.status.baseVersion;
    const bases = publishBases(job);
    // a follow-up may replace any version of its chain: the one the site is at, if it is one
    if (bases.length > 1) {
      const current = (await this.storage.getSite(job.spec.siteId)).version;
      if (bases.includes(current)) base = current;
    }
    if (!base) return { ok: false, reason: 'PublishConflict', message: 'the runner did not report the base version it edited' };
    if (!output) return { ok: false, reason: 'PublishConflict', message: 'the runner reported no output version' };
    try {
      const stored = await this.storage.publish(job.spec.siteId, uid, base, output, { by: job.metadata.name });
      return { ok: true, version: stored.version };
    } catch (err) {
      if (!(err instanceof StorageRequestError)) throw err;
      if (err.code === 'UnsafeOutput') return { ok: false, reason: 'UnsafeOutput', message: err.message };
      // storage holds another output than the runner reported: never publish it; a new attempt uploads again
      if (err.code === 'OutputMismatch') return { ok: false, reason: 'UploadFailed', message: err.message };
      if (err.status !== 409) throw err;
      // published before a crash? then the site's history names this job
      const site = await this.storage.getSite(job.spec.siteId);
      const ours = site.history.find((h) => h.job_id === uid);
      if (ours) return { ok: true, version: ours.version };
      return {
        ok: false,
        reason: 'PublishConflict',
        message: `site ${job.spec.siteId} moved from ${base.slice(0, 12)} to ${site.version.slice(0, 12)} while the job ran`,
      };
    }
  }

  async deleteOutputs(job: PagewrightJob): Promise<void> {
    await this.storage.deleteJob(job.metadata.uid);
  }
}
