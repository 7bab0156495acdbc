/**
 * Storage's Prometheus metrics (GET /metrics): requests by route, bytes in and out, errors by
 * code, and the collector's sweeps. Labels are route patterns and codes, never ids (sites and
 * jobs are unbounded).
 */
import type { NextFunction, Request, Response } from 'express';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BlobBackend, SweepReport } from './backend.js';

export class StorageMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly duration: Histogram<'route' | 'method'>;
  readonly bytes: Counter<'direction'>;
  readonly errors: Counter<'code'>;
  readonly sweeps: Counter<'outcome'>;
  readonly sweptBlobs: Counter;
  readonly freedBytes: Counter;
  readonly lastSweep: Gauge;

  constructor(backend: 'fs' | 's3') {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ backend });
    collectDefaultMetrics({ register: this.registry, prefix: 'pagewright_storage_' });
    this.requests = new Counter({
      name: 'pagewright_storage_requests_total',
      help: 'Requests by route pattern, method and HTTP status.',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.duration = new Histogram({
      name: 'pagewright_storage_request_seconds',
      help: 'From a request arriving to its response ending (uploads and downloads included).',
      labelNames: ['route', 'method'],
      buckets: [0.005, 0.02, 0.1, 0.5, 2, 10, 60, 300],
      registers,
    });
    this.bytes = new Counter({
      name: 'pagewright_storage_bytes_total',
      help: 'Blob bytes stored (in) and served (out).',
      labelNames: ['direction'],
      registers,
    });
    this.errors = new Counter({
      name: 'pagewright_storage_errors_total',
      help: 'Refused or failed requests by error code (UpstreamUnavailable: the S3 server failed).',
      labelNames: ['code'],
      registers,
    });
    this.sweeps = new Counter({
      name: 'pagewright_storage_gc_sweeps_total',
      help: 'Collector sweeps by outcome (ok, failed).',
      labelNames: ['outcome'],
      registers,
    });
    this.sweptBlobs = new Counter({ name: 'pagewright_storage_gc_deleted_blobs_total', help: 'Blobs the collector deleted.', registers });
    this.freedBytes = new Counter({ name: 'pagewright_storage_gc_freed_bytes_total', help: 'Bytes the collector freed.', registers });
    this.lastSweep = new Gauge({
      name: 'pagewright_storage_gc_last_success_timestamp_seconds',
      help: 'When the last sweep that succeeded ended (unix seconds; 0: none yet).',
      registers,
    });
  }

  /** Counts every request when its response ends, by the route that matched it. */
  middleware() {
    return (req: Request, res: Response, next: NextFunction): void => {
      const end = this.duration.startTimer();
      res.once('finish', () => {
        const route = typeof req.route?.path === 'string' ? req.route.path : 'unmatched';
        end({ route, method: req.method });
        this.requests.inc({ route, method: req.method, status: String(res.statusCode) });
        const sent = Number(res.getHeader('content-length') ?? 0);
        if (req.method === 'GET' && res.statusCode === 200 && res.getHeader('x-content-sha256') !== undefined) {
          this.bytes.inc({ direction: 'out' }, sent);
        }
      });
      next();
    };
  }

  /** The blobs, with every stored blob's bytes counted (in) once its reference is written. */
  counting(blobs: BlobBackend): BlobBackend {
    const bytes = this.bytes;
    return {
      kind: blobs.kind,
      close: () => blobs.close(),
      protect: (blob, fn) => blobs.protect(blob, fn),
      size: (blob) => blobs.size(blob),
      open: (blob) => blobs.open(blob),
      referenceOf: (blob) => blobs.referenceOf(blob),
      sweep: (referenced, grace) => blobs.sweep(referenced, grace),
      put: (body, opts, use) =>
        blobs.put(body, opts, async (blob) => {
          const result = await use(blob);
          bytes.inc({ direction: 'in' }, blob.size);
          return result;
        }),
    };
  }

  sweep(report: SweepReport | null): void {
    if (report === null) {
      this.sweeps.inc({ outcome: 'failed' });
      return;
    }
    this.sweeps.inc({ outcome: 'ok' });
    this.sweptBlobs.inc(report.deleted);
    this.freedBytes.inc(report.bytes_freed);
    this.lastSweep.set(Date.now() / 1000);
  }
}
