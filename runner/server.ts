/** The runner's HTTP face: GET /health, GET /status, POST /kill (job token). */
import express, { type NextFunction, type Request, type Response } from 'express';
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
      res.status(401).json({ error: 'Unauthorized', message: 'POST /kill needs the job token as a bearer token' });
      return;
    }
    if (!runner.kill()) {
      res.status(409).json({ error: 'AlreadyFinished', message: `job already ${runner.status().status}` });
      return;
    }
    logger.warn('kill requested');
    res.status(202).json({ ok: true, status: runner.status() });
  });

  app.use((req: Request, res: Response) => {
    res.status(404).json({ error: 'NotFound', message: `no route ${req.method} ${req.path}` });
  });
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    logger.error('request failed', { path: req.path, error: String(err) });
    res.status(500).json({ error: 'Internal', message: 'internal error' });
  });
  return app;
}
