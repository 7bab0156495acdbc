/**
 * The agent container's process (manager/pod-spec.ts): it runs codex when the runner asks and
 * nothing else. It listens on the pod's loopback only, holds no credential of its own (the
 * runner sends the gateway credential with each run, in codex's environment) and runs as the
 * agent's uid, so whatever the agent does, it does without the runner's secrets.
 *
 *   POST /runs                    {command, args, env, cwd, marker}: starts the run and streams
 *                                 NDJSON lines {t: stdout|stderr, l} then {t: exit, code, signal,
 *                                 forkRefusals?}
 *   POST /runs/current/interrupt  SIGINT to the run's process group
 *   POST /runs/current/kill       SIGKILL to its group and every process with its marker
 *   GET  /health
 *
 * Everything it says is as trustworthy as the agent (same uid, same container): the runner
 * judges a run by what it can check itself (the files, the gateway's account of the model calls).
 *
 * The pids limit: while a run lasts, the server watches its container's count of forks the kernel
 * refused for a pids limit (cgroup-pids.ts). The first refusal stops the run at once (a fork bomb
 * holds the pod at its limit, the runner's container included, for as long as it lives) and the
 * exit line says how many forks were refused: the runner fails the job PidsLimitExceeded. The
 * count is the kernel's, but it reaches the runner through this server, as trustworthy as the
 * agent: a lie can only change the reason its own job fails for, or hide that it hit a limit
 * that held anyway.
 */
import express from 'express';
import { z } from 'zod';
import { installErrorHandling } from '../common/error-middleware.js';
import { PagewrightError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { SMALL_API_TIMEOUTS, listen } from '../common/server-timeouts.js';
import { type AgentRun, type AgentServerLine, LocalLauncher } from './agent-launcher.js';
import { forkRefusals } from './cgroup-pids.js';

/** How often a run's fork refusals are read (one small cgroup file). */
const PIDS_WATCH_MS = 250;

/**
 * In a pod the server runs as the only child of the agent container's init (AGENT_INIT in
 * manager/pod-spec.ts, which says so in PAGEWRIGHT_AGENT_INIT): there kill(-1) reaches every
 * other process of the container and nothing else (the kernel spares the caller and its pid
 * namespace's init). One system call: a fork bomb cannot outrun it the way it outruns a list of
 * marked processes and a kill of each (measured on the real node, a bomb held at 1024 pids: with
 * the marked kill alone the job ended 177 s after codex started, with kill(-1) first 1.7 s), and
 * it reaches processes that dropped the run's marker. Anywhere else (`pagewright run`,
 * tests) it is never used: kill(-1) there would reach every process of the user.
 */
function ownsItsContainer(): boolean {
  return process.env.PAGEWRIGHT_AGENT_INIT === 'pod' && process.ppid === 1 && process.getuid?.() !== 0;
}

/** SIGKILL to everything the run started: the whole container where the server owns it, then the run's group and marked processes. */
async function stopAll(run: AgentRun): Promise<void> {
  if (ownsItsContainer()) {
    try {
      process.kill(-1, 'SIGKILL');
    } catch {
      // ESRCH: nothing else runs
    }
  }
  await run.killAll();
}

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
    const refusedBefore = await forkRefusals();
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
      if (current === run) void stopAll(run);
    });
    const refused = async () => ((await forkRefusals()) ?? 0) - (refusedBefore ?? 0);
    const watch =
      refusedBefore === null
        ? null
        : setInterval(() => {
            void refused().then((n) => {
              if (n <= 0 || current !== run) return;
              logger.warn('the pids limit was hit: stopping the run', { fork_refusals: n });
              if (watch) clearInterval(watch);
              void stopAll(run);
            });
          }, PIDS_WATCH_MS);
    const exit = await run.exited;
    if (watch) clearInterval(watch);
    await stopAll(run); // even after a clean exit, nothing the agent started may linger
    const forks = refusedBefore === null ? 0 : await refused();
    current = null;
    logger.info('run ended', { code: exit.code, signal: exit.signal, fork_refusals: forks });
    send({ t: 'exit', ...exit, ...(forks > 0 ? { forkRefusals: forks } : {}) });
    res.end();
  });

  app.post('/runs/current/interrupt', async (_req, res) => {
    await current?.interrupt();
    res.status(202).json({ ok: true });
  });

  app.post('/runs/current/kill', async (_req, res) => {
    if (current) await stopAll(current);
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
