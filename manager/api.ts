/**
 * The manager's HTTP API: the runners' callbacks (the runner credential, scope "callback", for
 * their own job and attempt only), the gateway's usage reports (its report token), health,
 * readiness and Prometheus metrics. A result is written into the job's status before it is
 * acknowledged, so an acknowledged result survives a manager crash; a duplicate or a result for
 * an attempt that is no longer current is acknowledged and changes nothing.
 */
import express, { type Request } from 'express';
import { installErrorHandling } from '../common/error-middleware.js';
import { PagewrightError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { JobProgress, JobResult, UsageReport } from '../common/schemas.js';
import { type JobTokens, bearerToken, constantTimeEqual } from '../common/tokens.js';
import type { JobCache } from './job-cache.js';
import type { ManagerMetrics } from './metrics.js';
import { splitKey } from '../common/job-resource.js';
import type { StatusWriter } from './status.js';
import { progressed, resultOutcome, resultReported, usageReported } from './transitions.js';

export interface ManagerApiDeps {
  tokens: JobTokens;
  /** What the gateway presents with usage reports. */
  gatewayReportToken: string;
  cache: JobCache;
  status: StatusWriter;
  metrics: ManagerMetrics;
  logger: Logger;
  enqueue: (key: string) => void;
  /** Informers synced: callbacks can be matched to jobs. */
  ready: () => boolean;
  /** Still serving (false once shutdown began). */
  live: () => boolean;
}

export function createManagerApp(d: ManagerApiDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');

  app.get('/healthz', (_req, res) => void res.status(d.live() ? 200 : 503).json({ ok: d.live() }));
  app.get('/readyz', (_req, res) => {
    const ready = d.live() && d.ready();
    res.status(ready ? 200 : 503).json({ ready });
  });
  app.get('/metrics', async (_req, res) => {
    res.setHeader('content-type', d.metrics.registry.contentType).send(await d.metrics.registry.metrics());
  });

  /** The job a callback is about, after checking its token names that job; and the token's attempt. */
  async function callbackJob(req: Request): Promise<{ key: string; uid: string; attempt: number }> {
    const uid = String(req.params.id);
    const token = bearerToken(req.headers.authorization);
    if (!token) throw new PagewrightError('TokenMissing', 'a callback needs the runner credential as a bearer token');
    const claims = await d.tokens.verify(token, 'callback');
    if (claims.jobId !== uid) throw new PagewrightError('TokenForbidden', 'the token belongs to another job');
    if (!d.ready()) throw new PagewrightError('NotReady', 'the manager is starting; retry');
    const key = d.cache.keyOfUid(uid);
    if (!key) throw new PagewrightError('JobNotFound', `no PagewrightJob with uid ${uid}`);
    return { key, uid, attempt: claims.attempt };
  }

  /** A runner speaks for its own attempt only. */
  function sameAttempt(token: number, body: number): void {
    if (token !== body) throw new PagewrightError('TokenForbidden', `the token is attempt ${token}'s, the body speaks for attempt ${body}`);
  }

  function body<T>(
    schema: {
      safeParse(
        v: unknown,
      ): { success: true; data: T } | { success: false; error: { issues: Array<{ path: PropertyKey[]; message: string }> } };
    },
    req: Request,
    uid: string,
  ): T {
    const parsed = schema.safeParse(req.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new PagewrightError('BadRequest', `invalid body: ${issue?.path.join('.') || '(root)'} ${issue?.message}`);
    }
    if ((parsed.data as { job_id: string }).job_id !== uid)
      throw new PagewrightError('BadRequest', 'job_id in the body does not match the URL');
    return parsed.data;
  }

  app.post('/jobs/:id/result', express.json({ limit: '512kb' }), async (req, res) => {
    const { key, uid, attempt } = await callbackJob(req);
    const result = body(JobResult, req, uid);
    sameAttempt(attempt, result.attempt);
    const { namespace, name } = splitKey(key);
    // the live object, not the cache: a lagging cache could call a current attempt stale
    const live = await d.status.get(namespace, name);
    let outcome = resultOutcome(live, result.attempt);
    if (outcome === 'recorded') {
      const { job: stored, written } = await d.status.update(live, resultReported(result));
      if (!written) outcome = resultOutcome(stored, result.attempt);
    }
    d.metrics.callbacks.inc({ kind: 'result', outcome });
    d.logger.info('result callback', { job: key, attempt: result.attempt, status: result.status, outcome });
    d.enqueue(key);
    res.json({ ok: true, outcome });
  });

  app.post('/jobs/:id/progress', express.json({ limit: '16kb' }), async (req, res) => {
    const { key, uid, attempt } = await callbackJob(req);
    const progress = body(JobProgress, req, uid);
    sameAttempt(attempt, progress.attempt);
    const cached = d.cache.job(key);
    if (cached) await d.status.update(cached, progressed(progress));
    d.metrics.callbacks.inc({ kind: 'progress', outcome: 'recorded' });
    res.json({ ok: true });
  });

  app.post('/jobs/:id/usage', express.json({ limit: '16kb' }), async (req, res) => {
    const token = bearerToken(req.headers.authorization);
    if (!token || !constantTimeEqual(token, d.gatewayReportToken))
      throw new PagewrightError('TokenInvalid', "usage reports need the gateway's report token");
    if (!d.ready()) throw new PagewrightError('NotReady', 'the manager is starting; retry');
    const uid = String(req.params.id);
    const report = body(UsageReport, req, uid);
    const key = d.cache.keyOfUid(uid);
    if (!key) throw new PagewrightError('JobNotFound', `no PagewrightJob with uid ${uid}`);
    const { namespace, name } = splitKey(key);
    const { job: stored } = await d.status.update(await d.status.get(namespace, name), usageReported(report));
    d.metrics.callbacks.inc({ kind: 'usage', outcome: report.refusal ? 'refusal' : 'recorded' });
    if (report.refusal) d.logger.info('gateway refused a model call', { job: key, attempt: report.attempt, reason: report.refusal.reason });
    if (report.refusal) d.enqueue(key);
    res.json({ ok: true, usage: stored.status.usage });
  });

  // TokenError (verify), JobGoneError (status writes: JobNotFound) and the refusals above are all PagewrightErrors
  installErrorHandling(app, { logger: d.logger });
  return app;
}
