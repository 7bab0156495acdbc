/**
 * Preview entry point: config, the storage client, the artifact cache, the job and site
 * resolvers, and two listeners: the public one (signed links, /healthz) on PREVIEW_HOST, and
 * the API routes on 127.0.0.1 only (PREVIEW_LOCAL_API_PORT), because nothing authenticates
 * them here: the aggregated API (the apiserver authenticates and authorizes the caller) will
 * serve them instead. SIGTERM closes both and waits for evictions under way.
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
import { KubeJobResolver, storageSiteResolver } from './resolvers.js';
import { createPreviewApps } from './server.js';

await runMain('preview', async () => {
  const config = loadConfig(previewConfigSpec);
  const logger = createLogger({ service: 'preview', level: config.logLevel });
  const kubeConfig = new PooledKubeConfig();
  kubeConfig.loadFromDefault();
  const storage = new StorageClient({ baseUrl: config.storageUrl, token: config.storageToken });
  const limits = { maxEntries: config.maxArchiveEntries, maxBytes: config.maxUnpackedBytes };
  const cache = new ArtifactCache({ dir: config.cacheDir, maxBytes: config.cacheBytes, limits, logger });
  await cache.init();
  const jobs = new KubeJobResolver(kubeConfig.makeApiClient(CustomObjectsApi));
  const apps = createPreviewApps({
    storage,
    resolveJob: (namespace, name) => jobs.resolve(namespace, name),
    // PLACEHOLDER: the storage site of the same name, until the PagewrightSite resource is wired
    resolveSite: storageSiteResolver(storage),
    cacheDir: config.cacheDir,
    cacheBytes: config.cacheBytes,
    limits,
    cache,
    logger,
    ...(config.linkSecret ? { links: { secret: config.linkSecret, baseUrl: config.baseUrl, ttlSeconds: config.linkTtlSeconds } } : {}),
  });
  const timeouts = { ...SMALL_API_TIMEOUTS, keepAliveMs: 30_000 };
  const pub = await listen(apps.public, config.port, config.host, timeouts);
  const api = await listen(apps.api, config.localApiPort, '127.0.0.1', timeouts);
  logger.info('preview listening', { port: config.port, localApiPort: config.localApiPort, signedLinks: Boolean(config.linkSecret) });

  return async () => {
    logger.info('shutting down');
    for (const server of [pub, api]) {
      server.close();
      server.closeIdleConnections();
    }
    await apps.close();
    await kubeConfig.close();
  };
});
