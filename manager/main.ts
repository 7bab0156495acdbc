/**
 * Manager entry point: config from PAGEWRIGHT_* env, the Kubernetes client from the in-cluster
 * service account (or KUBECONFIG), a check of the cluster's Kubernetes version (>= 1.29,
 * server-version.ts: exit 1 naming both below it), the controller, and the HTTP API. SIGTERM stops taking work,
 * lets in-flight reconciles finish, releases the Lease and closes the server.
 */
import { hostname } from 'node:os';
import { VersionApi } from '@kubernetes/client-node';
import winston from 'winston';
import { ConfigError, loadConfig } from '../common/config.js';
import { createLogger } from '../common/logger.js';
import { runMain } from '../common/main.js';
import { withRetry } from '../common/retry.js';
import { SMALL_API_TIMEOUTS, listen } from '../common/server-timeouts.js';
import { StorageClient } from '../common/storage-client.js';
import { JobTokens } from '../common/tokens.js';
import { createManagerApp } from './api.js';
import { managerConfigSpec } from './config.js';
import { Controller, renewDeadlineSeconds } from './controller.js';
import { PooledKubeConfig } from '../common/kube-client.js';
import { kubernetesVersionVerdict } from './server-version.js';

await runMain('manager', async () => {
  const config = loadConfig(managerConfigSpec);
  const renewDeadline = renewDeadlineSeconds(config);
  if (config.leaderElection && !(config.leaseRenewSeconds < renewDeadline && renewDeadline < config.leaseDurationSeconds))
    throw new ConfigError([
      `PAGEWRIGHT_LEASE_RENEW_SECONDS (${config.leaseRenewSeconds}) < PAGEWRIGHT_LEASE_RENEW_DEADLINE_SECONDS (${renewDeadline}) < PAGEWRIGHT_LEASE_DURATION_SECONDS (${config.leaseDurationSeconds}) must hold`,
    ]);
  const identity = config.identity ?? `${hostname()}-${process.pid}`;
  const logger = createLogger({
    service: 'manager',
    level: config.logLevel,
    fields: { instance: identity },
    transports: [new winston.transports.Console({ stderrLevels: ['debug', 'info', 'warn', 'error'] })],
  });
  const kubeConfig = new PooledKubeConfig();
  kubeConfig.loadFromDefault();
  // runner pods need native sidecars: below Kubernetes 1.29 they would hang in Init, so refuse
  const version = await withRetry(() => kubeConfig.makeApiClient(VersionApi).getCode(), {
    retries: 5,
    isRetryable: () => true,
    onRetry: ({ error, delayMs }) => logger.warn('cannot read the apiserver version yet', { error: String(error), retry_in_ms: delayMs }),
  });
  const verdict = kubernetesVersionVerdict(version);
  if (!verdict.ok) {
    process.stderr.write(`manager: ${verdict.message}\n`);
    process.exit(1);
  }
  logger.info('kubernetes version', { version: verdict.version });
  const tokens = new JobTokens(config.tokenSecret);
  let live = true;
  const controller = new Controller({
    config,
    kubeConfig,
    storage: new StorageClient({ baseUrl: config.storageUrl, token: config.storageAdminToken }),
    tokens,
    logger,
    identity,
    onLostLeadership: () => {
      logger.error('lost leadership; exiting so a fresh process campaigns again');
      process.exit(1);
    },
  });
  const app = createManagerApp({
    tokens,
    gatewayReportToken: config.gatewayReportToken,
    cache: controller.cache,
    status: controller.status,
    metrics: controller.metrics,
    logger,
    enqueue: (key) => controller.queue.add(key),
    ready: () => controller.synced,
    live: () => live,
  });
  // serve first: /healthz answers and callbacks get 503 (retried) until the caches are synced
  const server = await listen(app, config.port, config.host, SMALL_API_TIMEOUTS);
  const address = server.address();
  logger.info('manager listening', {
    port: typeof address === 'object' && address ? address.port : config.port,
    leader_election: config.leaderElection,
  });
  await controller.start();

  return async () => {
    logger.info('shutting down: finishing in-flight reconciles');
    live = false;
    await controller.stop();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await kubeConfig.close();
    logger.info('stopped');
  };
});
