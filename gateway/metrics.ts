/** The gateway's Prometheus metrics: no per-job label (jobs are unbounded; their usage is in each job's status). */
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'outcome'>;
  readonly tokens: Counter<'kind'>;
  readonly firstByte: Histogram;
  readonly rateLimitWait: Histogram;
  readonly upstream429: Counter;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'pagewright_gateway_' });
    this.requests = new Counter({
      name: 'pagewright_gateway_requests_total',
      help: 'Model calls by route and outcome (ok, upstream_error, budget_exceeded, rate_limited, model_not_allowed, attempt_ended, unauthorized).',
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
  }
}
