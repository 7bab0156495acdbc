/**
 * The agent container's process (manager/pod-spec.ts): it runs codex when the runner asks and
 * nothing else. It listens on the pod's loopback only, holds no credential of its own (the
 * runner sends the gateway credential with each run, in codex's environment) and runs as the
 * agent's uid, so whatever the agent does, it does without the runner's secrets.
 *
 *   POST /runs                    {command, args, env, cwd, marker}: starts the run and streams
 *                                 NDJSON lines {t: stdout|stderr, l} then {t: exit, code, signal}
 *   POST /runs/current/interrupt  SIGINT to the run's process group
 *   POST /runs/current/kill       SIGKILL to its group and every process with its marker
 *   GET  /health
 *
 * Everything it says is as trustworthy as the agent (same uid, same container): the runner
 * judges a run by what it can check itself (the files, the gateway's account of the model calls).
 */
import express from 'express';
import { z } from 'zod';
import { installErrorHandling } from '../common/error-middleware.js';
import { PagewrightError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { SMALL_API_TIMEOUTS, listen } from '../common/server-timeouts.js';
import { type AgentRun, type AgentServerLine, LocalLauncher } from './agent-launcher.js';

const AgentSpecBody = z.object({
  command: z.string().min(1),
  args: z.array(z.string()),
  env: z.record(z.string(), z.string()),
  cwd: z.string().min(1),
  marker: z.string().min(8),
});

function createAgentApp(logger: Logger, launcher = new LocalLauncher()): express.Express {
  const app = express();
  app.disable('x-powered-by');
  let current: AgentRun | null = null;

  app.get('/health', (_req, res) => void res.json({ ok: true, running: current !== null }));

  app.post('/runs', express.json({ limit: '4mb' }), async (req, res) => {
    const spec = AgentSpecBody.safeParse(req.body);
    if (!spec.success) throw new PagewrightError('BadRequest', spec.error.issues[0]?.message ?? 'invalid run');
    if (current) throw new PagewrightError('Busy', 'a run is in progress');
    res.status(200).setHeader('content-type', 'application/x-ndjson');
    res.flushHeaders();
    const send = (line: AgentServerLine) => void res.write(`${JSON.stringify(line)}\n`);
    let run: AgentRun;
    try {
      run = await launcher.start(spec.data, (t, l) => send({ t, l }));
    } catch (err) {
      send({ t: 'error', message: (err as Error).message });
      send({ t: 'exit', code: null, signal: 'spawn-failed' });
      return void res.end();
    }
    current = run;
    logger.info('run started', { command: spec.data.command });
    // the runner went away (its connection closed): nothing may outlive it
    res.on('close', () => {
      if (current === run) void run.killAll();
    });
    const exit = await run.exited;
    await run.killAll(); // even after a clean exit, nothing the agent started may linger
    current = null;
    logger.info('run ended', { code: exit.code, signal: exit.signal });
    send({ t: 'exit', ...exit });
    res.end();
  });

  app.post('/runs/current/interrupt', async (_req, res) => {
    await current?.interrupt();
    res.status(202).json({ ok: true });
  });

  app.post('/runs/current/kill', async (_req, res) => {
    await current?.killAll();
    res.json({ ok: true });
  });

  installErrorHandling(app, { logger });
  return app;
}

/** Serves on the pod's loopback until SIGTERM (the kubelet stops the sidecar once the runner exited). */
export async function serveAgent(port: number, logger: Logger): Promise<() => Promise<void>> {
  // a run's answer streams for as long as codex runs: only the request itself is bounded
  const server = await listen(createAgentApp(logger), port, '127.0.0.1', SMALL_API_TIMEOUTS);
  logger.info('agent server listening', { port });
  return async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
}
