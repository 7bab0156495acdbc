import type { JobResult } from '../../common/schemas.js';

/** A runner's result as it calls back with it: one file changed, completed; `over` sets the rest. */
export function jobResult(jobId: string, attempt: number, over: Partial<JobResult> = {}): JobResult {
  const now = new Date().toISOString();
  return {
    job_id: jobId,
    attempt,
    status: 'completed',
    reason: null,
    error: null,
    files_changed: 1,
    files: ['index.html'],
    summary: 'done',
    base_version: null,
    output_version: null,
    started_at: now,
    finished_at: now,
    phase_durations_ms: {},
    ...over,
  };
}
