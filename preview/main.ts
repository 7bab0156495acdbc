/**
 * Preview entry point: config, the storage client, the artifact cache, the job and site
 * resolvers, and two listeners: the review API (review-server.ts: TLS, only the kube-apiserver's
 * front proxy as a client, every request authorized against the user's RBAC), which serves the
 * previews, review pages and diffs with the pushes, pulls and rollbacks; and the public one (the
 * signed links of an Ingress, /healthz). SIGTERM closes both and waits for evictions under way.
 */
import { CustomObjectsApi } from '@kubernetes/client-node';
import { loadConfig } from '../common/config.js';
import { PooledKubeConfig } from '../common/kube-client.js';
import { createLogger } from '../common/logger.js';
import { runMain } from '../common/main.js';
import { SMALL_API_TIMEOUTS, listen } from '../common/server-timeouts.js';
import { StorageClient } from '../common/storage-client.js';
import { ArtifactCache } from './artifact-cache.js';
import { previewConfigSpec } from './config.js';
import { KubeJobResolver } from './resolvers.js';
import { startReviewServer } from './review-server.js';
import { createPreviewApps } from './server.js';
import { KubeSiteDirectory } from './site-directory.js';

await runMain('preview', async () => {
  const config = loadConfig(previewConfigSpec);
  const logger = createLogger({ service: 'preview', level: config.logLevel });
  const kubeConfig = new PooledKubeConfig();
  kubeConfig.loadFromDefault();
  const storage = new StorageClient({ baseUrl: config.storageUrl, token: config.storageToken });
  const limits = { maxEntries: config.maxArchiveEntries, maxBytes: config.maxUnpackedBytes };
  const cache = new ArtifactCache({ dir: config.cacheDir, maxBytes: config.cacheBytes, limits, logger });
  await cache.init();
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  const jobs = new KubeJobResolver(custom);
  const sites = new KubeSiteDirectory(custom, storage);
  const apps = createPreviewApps({
    storage,
    resolveJob: (namespace, name) => jobs.resolve(namespace, name),
    resolveSite: (namespace, name) => sites.reviewSite(namespace, name),
    cacheDir: config.cacheDir,
    cacheBytes: config.cacheBytes,
    limits,
    cache,
    logger,
    ...(config.linkSecret ? { links: { secret: config.linkSecret, baseUrl: config.baseUrl, ttlSeconds: config.linkTtlSeconds } } : {}),
  });
  const pub = await listen(apps.public, config.port, config.host, { ...SMALL_API_TIMEOUTS, keepAliveMs: 30_000 });
  const api = await startReviewServer({
    host: config.host,
    port: config.apiPort,
    tlsCertFile: config.tlsCertFile,
    tlsKeyFile: config.tlsKeyFile,
    kubeConfig,
    storage,
    sites,
    limits: { maxArtifactBytes: config.maxPushBytes, archive: limits },
    scratchDir: config.scratchDir,
    previews: apps.router,
    logger,
  });
  logger.info('preview listening', { port: config.port, apiPort: config.apiPort, signedLinks: Boolean(config.linkSecret) });

  return async () => {
    logger.info('shutting down');
    pub.close();
    pub.closeIdleConnections();
    await api.close();
    await apps.close();
    await kubeConfig.close();
  };
});
