/** The manager's Prometheus metrics, in a Registry of its own (no prom-client global state). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { JobPhase } from '../common/job-resource.js';

export interface MetricsSources {
  jobsByPhase: () => Map<string, number>;
  queueDepth: () => number;
  isLeader: () => boolean;
}

export class ManagerMetrics {
  readonly registry = new Registry();
  readonly jobDuration: Histogram<'phase'>;
  readonly runnerPhaseDuration: Histogram<'phase'>;
  readonly reconcileDuration: Histogram<'result'>;
  readonly reconcileErrors: Counter;
  readonly watchRestarts: Counter<'informer' | 'cause'>;
  readonly callbacks: Counter<'kind' | 'outcome'>;
  readonly transitions: Counter<'phase' | 'reason'>;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'pagewright_manager_' });
    new Gauge({
      name: 'pagewright_jobs',
      help: 'PagewrightJobs in the informer cache, by phase (Pending: not yet seen by the manager).',
      labelNames: ['phase'],
      registers,
      collect() {
        const counts = sources.jobsByPhase();
        this.reset();
        for (const phase of [...JobPhase.options, 'Pending']) this.set({ phase }, counts.get(phase) ?? 0);
      },
    });
    new Gauge({
      name: 'pagewright_workqueue_depth',
      help: 'Keys waiting in the work queue.',
      registers,
      collect() {
        this.set(sources.queueDepth());
      },
    });
    new Gauge({
      name: 'pagewright_leader',
      help: '1 if this replica holds the Lease (or runs without leader election).',
      registers,
      collect() {
        this.set(sources.isLeader() ? 1 : 0);
      },
    });
    const minutes = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200];
    this.jobDuration = new Histogram({
      name: 'pagewright_job_duration_seconds',
      help: 'From admission to the end of the job, by final phase.',
      labelNames: ['phase'],
      buckets: minutes,
      registers,
    });
    this.runnerPhaseDuration = new Histogram({
      name: 'pagewright_runner_phase_duration_seconds',
      help: "Duration of each runner phase, from the runners' results.",
      labelNames: ['phase'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800],
      registers,
    });
    this.reconcileDuration = new Histogram({
      name: 'pagewright_reconcile_duration_seconds',
      help: 'Latency of one reconcile of one job.',
      labelNames: ['result'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.reconcileErrors = new Counter({
      name: 'pagewright_reconcile_errors_total',
      help: 'Reconciles that failed and were requeued.',
      registers,
    });
    this.watchRestarts = new Counter({
      name: 'pagewright_watch_restarts_total',
      help: 'Watches restarted after an error or by the watchdog.',
      labelNames: ['informer', 'cause'],
      registers,
    });
    this.callbacks = new Counter({
      name: 'pagewright_callbacks_total',
      help: 'Runner callbacks received, by kind (result, progress) and outcome.',
      labelNames: ['kind', 'outcome'],
      registers,
    });
    this.transitions = new Counter({
      name: 'pagewright_job_transitions_total',
      help: 'Job phase transitions, by new phase and reason.',
      labelNames: ['phase', 'reason'],
      registers,
    });
  }
}
