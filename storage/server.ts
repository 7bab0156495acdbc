/**
 * Starts the storage service on a data directory; used by main.ts, the local CLI and tests.
 *
 * Connection timeouts, so that idle or slow clients cannot hold sockets (and memory) for ever:
 * the headers must arrive within headersTimeout; the whole request (an upload) within
 * requestTimeout, sized for the largest artifact at a slow rate; a kept-alive connection waits
 * keepAliveTimeout for its next request; and a socket with no bytes either way for idleTimeout
 * is closed, which also ends an upload that stalls half-way. A client that connects and sends
 * nothing gets a 408 and is closed at the headers timeout or the idle timeout, whichever is
 * shorter (measured with the defaults: 30.0 s). Node checks the headers and request timeouts
 * on a timer (connectionsCheckingInterval, settable only when the server is created), set here
 * to a quarter of the headers timeout, so they fire close to their time rather than up to
 * 30 s (Node's default interval) late.
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import { createTimedServer } from '../common/server-timeouts.js';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../common/logger.js';
import { JobTokens } from '../common/tokens.js';
import { createStorageApp } from './app.js';
import { createAuthorizer } from './auth.js';
import { STORAGE_DEFAULTS, type StorageConfig } from './config.js';
import { BlobCollector } from './gc.js';
import { StorageMetrics } from './metrics.js';
import { openBackend } from './open-backend.js';
import { RefStore } from './ref-store.js';

export interface StorageServer {
  /** e.g. http://127.0.0.1:8080 */
  url: string;
  server: Server;
  collector: BlobCollector;
  close(): Promise<void>;
}

/** Settings with defaults, and those that may stay unset. */
type Defaulted = keyof typeof STORAGE_DEFAULTS | 's3Bucket' | 's3Endpoint' | 's3ForcePathStyle' | 's3CaFile';
/** The config without logLevel; the settings with defaults may be left out. */
export type StorageServerConfig = Omit<StorageConfig, 'logLevel' | Defaulted> &
  Partial<Pick<StorageConfig, Defaulted>> & {
    /** Explicit S3 credentials; unset: the AWS SDK's default chain. */
    s3Credentials?: { accessKeyId: string; secretAccessKey: string };
  };

export async function startStorageServer(partial: StorageServerConfig, logger: Logger): Promise<StorageServer> {
  const config = { ...STORAGE_DEFAULTS, ...definedOnly(partial) } as Omit<StorageConfig, 'logLevel'> &
    Pick<StorageServerConfig, 's3Credentials'>;
  const backend = await openBackend(config);
  const metrics = new StorageMetrics(backend.blobs.kind);
  const blobs = metrics.counting(backend.blobs);
  const refs = new RefStore(backend.records);
  const collector = new BlobCollector(
    { blobs, refs, logger, onSweep: (report) => metrics.sweep(report) },
    { graceSeconds: config.gcGraceSeconds, intervalSeconds: config.gcIntervalSeconds },
  );
  const app = createStorageApp({
    blobs,
    refs,
    auth: createAuthorizer(config.adminToken, new JobTokens(config.tokenSecret), (jobId, attempt) => refs.checkAttempt(jobId, attempt)),
    collector,
    metrics,
    limits: {
      maxArtifactBytes: config.maxArtifactBytes,
      maxManifestBytes: config.maxManifestBytes,
      maxLogBytes: config.maxLogBytes,
      maxJobBytes: config.maxJobBytes,
      archive: { maxEntries: config.maxArchiveEntries, maxBytes: config.maxUnpackedBytes },
    },
    logger,
  });
  const ms = (seconds: number) => Math.max(1, Math.round(seconds * 1000));
  const server = createTimedServer(app, {
    headersMs: ms(config.headersTimeoutSeconds),
    requestMs: ms(config.requestTimeoutSeconds),
    keepAliveMs: ms(config.keepAliveTimeoutSeconds),
  });
  server.timeout = ms(config.idleTimeoutSeconds);
  server.listen(config.port, config.host);
  await once(server, 'listening');
  collector.start();
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  logger.info('storage listening', { url: `http://${host}:${port}`, backend: config.backend, at: backend.describe });
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host}:${port}`,
    server,
    collector,
    close() {
      // idempotent: tests and the CLI may both close on the way out
      closing ??= (async () => {
        await collector.close();
        server.closeAllConnections();
        await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
        await backend.close();
      })();
      return closing;
    },
  };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
