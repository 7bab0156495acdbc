/** The runner's observable state: phase, timings, outcome. Mutated only by JobRunner. */
import type { FailureReason } from '../common/errors.js';
import type { PhaseDurations, RunnerJob, RunnerPhase, RunnerState, RunnerStatus, WorkPhase } from '../common/schemas.js';

export class RunState {
  readonly #job: RunnerJob;
  #phase: RunnerPhase = 'idle';
  #phaseStartedAt = 0;
  #startedAt: number | null = null;
  #finishedAt: number | null = null;
  readonly #durations: PhaseDurations = {};
  filesChanged = 0;
  summary = '';
  error: string | null = null;
  reason: FailureReason | null = null;
  outputVersion: string | null = null;

  constructor(job: RunnerJob) {
    this.#job = job;
  }

  get phase(): RunnerPhase {
    return this.#phase;
  }

  get finished(): boolean {
    return this.#phase === 'completed' || this.#phase === 'failed';
  }

  get startedAt(): number | null {
    return this.#startedAt;
  }

  get durations(): PhaseDurations {
    return { ...this.#durations };
  }

  enter(phase: WorkPhase, now = Date.now()): void {
    this.#closePhase(now);
    this.#startedAt ??= now;
    this.#phase = phase;
    this.#phaseStartedAt = now;
  }

  finish(outcome: 'completed' | 'failed', now = Date.now()): void {
    this.#closePhase(now);
    this.#startedAt ??= now;
    this.#phase = outcome;
    this.#finishedAt = now;
  }

  #closePhase(now: number): void {
    if (this.#phase === 'idle' || this.finished) return;
    const phase = this.#phase as WorkPhase;
    this.#durations[phase] = (this.#durations[phase] ?? 0) + (now - this.#phaseStartedAt);
  }

  snapshot(): RunnerStatus {
    const state: RunnerState =
      this.#phase === 'idle' ? 'idle' : this.#phase === 'completed' ? 'completed' : this.#phase === 'failed' ? 'failed' : 'running';
    return {
      status: state,
      phase: this.#phase,
      files_changed: this.filesChanged,
      summary: this.summary,
      error: this.error,
      reason: this.reason,
      job_id: this.#job.job_id,
      attempt: this.#job.attempt,
      site_id: this.#job.site_id,
      started_at: this.#startedAt === null ? null : new Date(this.#startedAt).toISOString(),
      finished_at: this.#finishedAt === null ? null : new Date(this.#finishedAt).toISOString(),
      phase_durations_ms: this.durations,
      output_version: this.outputVersion,
    };
  }
}
