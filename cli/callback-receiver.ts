/**
 * The embedded default's stand-in for the manager's callback API: receives the runner's
 * progress and result (job token checked) so a local run exercises the same path as a cluster.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { installErrorHandling } from '../common/error-middleware.js';
import { PagewrightError } from '../common/errors.js';
import { type Logger, createLogger } from '../common/logger.js';
import { JobProgress, JobResult } from '../common/schemas.js';
import { bearerToken, constantTimeEqual } from '../common/tokens.js';

export interface CallbackReceiver {
  url: string;
  result: Promise<JobResult>;
  close(): Promise<void>;
}

export async function startCallbackReceiver(opts: {
  jobId: string;
  token: string;
  onProgress: (p: JobProgress) => void;
  logger?: Logger;
}): Promise<CallbackReceiver> {
  let resolveResult!: (r: JobResult) => void;
  const result = new Promise<JobResult>((resolve) => (resolveResult = resolve));
  const app = express();
  app.use(express.json({ limit: '1mb' }));
  app.use('/jobs/:jobId', (req, _res, next) => {
    const token = bearerToken(req.headers.authorization);
    if (req.params.jobId !== opts.jobId || token === null || !constantTimeEqual(token, opts.token)) {
      throw new PagewrightError('Unauthorized', 'unknown job or bad token');
    }
    next();
  });
  app.post('/jobs/:jobId/progress', (req, res) => {
    const parsed = JobProgress.safeParse(req.body);
    if (!parsed.success) throw new PagewrightError('BadRequest', parsed.error.message);
    opts.onProgress(parsed.data);
    res.json({ ok: true });
  });
  app.post('/jobs/:jobId/result', (req, res) => {
    const parsed = JobResult.safeParse(req.body);
    if (!parsed.success) throw new PagewrightError('BadRequest', parsed.error.message);
    resolveResult(parsed.data);
    res.json({ ok: true });
  });
  installErrorHandling(app, { logger: opts.logger ?? createLogger({ service: 'callback-receiver', level: 'silent' }) });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    result,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
