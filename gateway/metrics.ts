/** The gateway's Prometheus metrics: no per-job label (jobs are unbounded; their usage is in each job's status). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'outcome'>;
  readonly tokens: Counter<'kind'>;
  readonly firstByte: Histogram;
  readonly rateLimitWait: Histogram;
  readonly upstream429: Counter;
  readonly unreportedAnswers: Counter;
  /** Read when scraped, from what observe() names. */
  readonly bufferedBytes: Gauge;
  readonly trackedJobs: Gauge;
  #sources = { bufferedBytes: () => 0, trackedJobs: () => 0 };

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'pagewright_gateway_' });
    this.requests = new Counter({
      name: 'pagewright_gateway_requests_total',
      help: 'Model calls by route and outcome (ok, cached, upstream_error, upstream_cut, not_found, overloaded, budget_exceeded, rate_limited, model_not_allowed, hosted_tool_not_allowed, input_not_allowed, request_not_allowed, attempt_ended, unauthorized).',
      labelNames: ['route', 'outcome'],
      registers,
    });
    this.tokens = new Counter({
      name: 'pagewright_gateway_tokens_total',
      help: 'Tokens the upstream reported, by kind (input, output).',
      labelNames: ['kind'],
      registers,
    });
    this.firstByte = new Histogram({
      name: 'pagewright_gateway_upstream_first_byte_seconds',
      help: 'From sending a call upstream to its response headers.',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers,
    });
    this.rateLimitWait = new Histogram({
      name: 'pagewright_gateway_rate_limit_wait_seconds',
      help: 'Time calls waited for the shared backoff after an upstream 429.',
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300],
      registers,
    });
    this.upstream429 = new Counter({ name: 'pagewright_gateway_upstream_rate_limited_total', help: 'Upstream 429 answers.', registers });
    this.unreportedAnswers = new Counter({
      name: 'pagewright_gateway_unreported_usage_total',
      help: 'Answers that ended without reporting their usage (charged their reserved output tokens).',
      registers,
    });
    const sources = () => this.#sources;
    this.bufferedBytes = new Gauge({
      name: 'pagewright_gateway_buffered_request_bytes',
      help: 'Memory request bodies in flight hold, as the gateway accounts it (the cap is PAGEWRIGHT_GATEWAY_MAX_BUFFERED_BYTES).',
      registers,
      collect() {
        this.set(sources().bufferedBytes());
      },
    });
    this.trackedJobs = new Gauge({
      name: 'pagewright_gateway_tracked_jobs',
      help: 'Jobs whose usage the gateway holds (live jobs only).',
      registers,
      collect() {
        this.set(sources().trackedJobs());
      },
    });
  }

  /** Where the gauges read their values when scraped. */
  observe(sources: { bufferedBytes: () => number; trackedJobs: () => number }): void {
    this.#sources = sources;
  }
}
