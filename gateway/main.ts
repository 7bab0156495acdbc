/**
 * Gateway entry point: config, the watch on the jobs whose attempts it serves, the upstream
 * connection pool, the HTTP server with its timeouts, and a graceful stop on SIGTERM (stop taking
 * calls, let streams finish, deliver pending usage).
 */
import { Agent } from 'undici';
import winston from 'winston';
import { loadConfig } from '../common/config.js';
import { GatewayCredentials } from '../common/gateway-credential.js';
import { PooledKubeConfig } from '../common/kube-client.js';
import { createLogger } from '../common/logger.js';
import { runMain } from '../common/main.js';
import { listen } from '../common/server-timeouts.js';
import { createGatewayApp } from './app.js';
import { LiveAttempts } from './attempts.js';
import { SharedBackoff } from './backoff.js';
import { gatewayConfigSpec } from './config.js';
import { UsageLedger } from './ledger.js';
import { GatewayMetrics } from './metrics.js';
import { UsageReporter } from './reporter.js';

await runMain('gateway', async () => {
  const config = loadConfig(gatewayConfigSpec);
  const logger = createLogger({
    service: 'gateway',
    level: config.logLevel,
    transports: [new winston.transports.Console({ stderrLevels: ['debug', 'info', 'warn', 'error'] })],
  });
  const kubeConfig = new PooledKubeConfig();
  kubeConfig.loadFromDefault();
  const ledger = new UsageLedger();
  const attempts = new LiveAttempts(kubeConfig, config.watchNamespace, logger, (jobId) => ledger.forget(jobId));
  const upstream = new Agent({ keepAliveTimeout: 60_000, connections: 128 });
  const reporter = new UsageReporter({ managerUrl: config.managerUrl, token: config.reportToken, logger });
  const app = createGatewayApp({
    ...config,
    credentials: new GatewayCredentials(config.credentialSecret),
    attempts,
    ledger,
    backoff: new SharedBackoff(config.rateLimitBaseMs, config.rateLimitMaxMs),
    reporter,
    metrics: new GatewayMetrics(),
    logger,
    upstream,
  });
  // a streamed answer may last minutes: requestTimeout bounds only the request (its body)
  const server = await listen(app, config.port, config.host, {
    headersMs: config.headersTimeoutMs,
    requestMs: config.requestTimeoutMs,
    keepAliveMs: config.keepAliveTimeoutMs,
  });
  logger.info('gateway listening', { port: config.port, upstream: config.upstreamUrl });
  await attempts.start();
  logger.info('gateway ready: watching jobs', { namespace: config.watchNamespace ?? '(all)' });

  return async () => {
    logger.info('shutting down');
    server.close();
    server.closeIdleConnections();
    await attempts.stop();
    await reporter.close();
    await upstream.close();
    await kubeConfig.close();
  };
});
