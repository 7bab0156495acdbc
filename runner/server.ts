/** The runner's HTTP face: GET /health, GET /status, POST /kill (job token). */
import express from 'express';
import { installErrorHandling } from '../common/error-middleware.js';
import { PagewrightError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { bearerToken, constantTimeEqual } from '../common/tokens.js';
import type { JobRunner } from './job-runner.js';

export function createRunnerApp(runner: JobRunner, jobToken: string, logger: Logger): express.Express {
  const app = express();
  app.disable('x-powered-by');

  app.get('/health', (_req, res) => void res.json({ ok: true }));
  app.get('/status', (_req, res) => void res.json(runner.status()));

  app.post('/kill', (req, res) => {
    const token = bearerToken(req.headers.authorization);
    if (token === null || !constantTimeEqual(token, jobToken)) {
      throw new PagewrightError('Unauthorized', 'POST /kill needs the job token as a bearer token');
    }
    if (!runner.kill()) throw new PagewrightError('AlreadyFinished', `job already ${runner.status().status}`);
    logger.warn('kill requested');
    res.status(202).json({ ok: true, status: runner.status() });
  });

  installErrorHandling(app, { logger });
  return app;
}
