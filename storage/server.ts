/** Starts the storage service on a data directory; used by main.ts, the local CLI and tests. */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../common/logger.js';
import { JobTokens } from '../common/tokens.js';
import { createStorageApp } from './app.js';
import { createAuthorizer } from './auth.js';
import { BlobStore } from './blob-store.js';
import type { StorageConfig } from './config.js';
import { RefStore } from './ref-store.js';

export interface StorageServer {
  /** e.g. http://127.0.0.1:8080 */
  url: string;
  server: Server;
  close(): Promise<void>;
}

export async function startStorageServer(
  config: Omit<StorageConfig, 'logLevel'>,
  logger: Logger,
): Promise<StorageServer> {
  const blobs = new BlobStore(config.dataDir);
  await blobs.init();
  const refs = new RefStore(config.dataDir, blobs.tmpDir);
  const app = createStorageApp({
    blobs,
    refs,
    auth: createAuthorizer(config.adminToken, new JobTokens(config.tokenSecret)),
    limits: {
      maxArtifactBytes: config.maxArtifactBytes,
      maxManifestBytes: config.maxManifestBytes,
      maxLogBytes: config.maxLogBytes,
    },
    logger,
  });
  const server = app.listen(config.port, config.host);
  await once(server, 'listening');
  // large artifacts on slow links: bound the request by idle time, not total time
  server.requestTimeout = 0;
  server.timeout = 120_000;
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  logger.info('storage listening', { url: `http://${host}:${port}`, data_dir: config.dataDir });
  return {
    url: `http://${host}:${port}`,
    server,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
      await blobs.close();
    },
  };
}
