/**
 * Runner entry point: one job per process. Serves /health, /status and /kill while the job
 * runs, calls the manager back, keeps answering /status for PAGEWRIGHT_EXIT_DELAY_MS, then
 * exits 0 (completed) or 1 (failed). SIGTERM (pod deletion) kills the job first.
 *
 * `bundle.mjs agent` is the agent container's process instead (runner/agent-server.ts): the
 * same image, another uid, no job and no credentials.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import winston from 'winston';
import { loadConfig } from '../common/config.js';
import { PagewrightError } from '../common/errors.js';
import { SyncFileTransport, createLogger } from '../common/logger.js';
import { runMain } from '../common/main.js';
import { SMALL_API_TIMEOUTS, listen } from '../common/server-timeouts.js';
import { StorageClient } from '../common/storage-client.js';
import { RemoteLauncher } from './agent-launcher.js';
import { serveAgent } from './agent-server.js';
import { agentConfigSpec, runnerConfigSpec } from './config.js';
import { JobRunner } from './job-runner.js';
import { ManagerClient } from './manager-client.js';
import { createRunnerApp } from './server.js';

if (process.argv[2] === 'agent') {
  await runMain('agent', async () => {
    const config = loadConfig(agentConfigSpec);
    const logger = createLogger({
      service: 'agent',
      level: config.logLevel,
      transports: [new winston.transports.Console({ stderrLevels: ['debug', 'info', 'warn', 'error'] })],
    });
    return serveAgent(config.port, logger);
  });
} else {
  await runRunner();
}

async function runRunner(): Promise<void> {
  await runMain('runner', async () => {
    const config = loadConfig(runnerConfigSpec);
    const { job } = config;
    await mkdir(config.workDir, { recursive: true });
    const privateDir = config.privateDir ?? config.workDir;
    await mkdir(privateDir, { recursive: true });
    const logPath = join(privateDir, 'job.log');
    const logger = createLogger({
      service: 'runner',
      level: config.logLevel,
      fields: { job_id: job.job_id, attempt: job.attempt },
      transports: [new winston.transports.Console({ stderrLevels: ['debug', 'info', 'warn', 'error'] }), new SyncFileTransport(logPath)],
    });
    const launcher = config.agentUrl ? new RemoteLauncher(config.agentUrl) : undefined;
    const runner = new JobRunner({
      job,
      workDir: config.workDir,
      privateDir,
      ...(launcher ? { launcher, shareSiteWithGroup: true } : {}),
      runnerToken: config.jobToken,
      storage: new StorageClient({ baseUrl: config.storageUrl, token: config.jobToken }),
      manager: config.managerUrl
        ? new ManagerClient({ baseUrl: config.managerUrl, jobId: job.job_id, token: config.jobToken, logger })
        : null,
      codex: {
        binary: config.codexBinary,
        model: config.codexModel,
        llmUrl: config.llmUrl,
        llmKey: config.llmKey,
        instructionsPath: config.instructionsPath,
        killGraceMs: config.killGraceMs,
        requestMaxRetries: config.codexRequestRetries,
        streamMaxRetries: config.codexStreamRetries,
      },
      limits: { maxEntries: config.maxArchiveEntries, maxBytes: config.maxUnpackedBytes },
      maxDiffBytes: config.maxDiffBytes,
      logger,
      logPath,
      callbackTimeoutMs: config.callbackTimeoutMs,
    });
    const server = await listen(createRunnerApp(runner, config.jobToken, logger), config.port, config.host, SMALL_API_TIMEOUTS);
    const address = server.address();
    logger.info('runner listening', {
      host: config.host,
      port: typeof address === 'object' && address ? address.port : config.port,
      site_id: job.site_id,
    });

    const done = runner.run().then((result) => (result.status === 'completed' ? 0 : 1));
    void done.then(async (code) => {
      await new Promise((r) => setTimeout(r, config.exitDelayMs));
      server.closeAllConnections();
      server.close();
      process.exit(code);
    });

    // SIGTERM comes from outside the job: the pod was deleted, evicted or ran past its deadline (the
    // manager's own cancel sends POST /kill first). The runner cannot tell which; the manager reads
    // it from the pod, so PodTerminated is the runner's honest "stopped from outside".
    return async () => {
      logger.warn('terminating: killing the job');
      runner.kill(new PagewrightError('PodTerminated', 'the runner pod was terminated (SIGTERM) before the job finished'));
      return done;
    };
  });
}
