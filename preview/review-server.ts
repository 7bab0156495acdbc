/**
 * The review API's TLS server (review-api.ts), as the preview service's main starts it: its
 * serving certificate from files (the Secret deploy/apply.sh makes, whose CA the APIService
 * trusts), client certificates requested but verified against the front proxy's CA only (an
 * unauthenticated caller gets a TLS session and a 401, never a user), and that CA re-read from
 * the cluster every few minutes, so a rotation of the apiserver's front-proxy CA is followed
 * without a restart.
 */
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:https';
import { once } from 'node:events';
import { AuthorizationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Router } from 'express';
import type { ArchiveLimits } from '../common/archive-rules.js';
import type { Logger } from '../common/logger.js';
import { createTimedServer } from '../common/server-timeouts.js';
import type { StorageClient } from '../common/storage-client.js';
import { AccessReviewer } from './access-review.js';
import { loadRequestHeaderConfig } from './front-proxy.js';
import { type SiteDirectory, createReviewApi } from './review-api.js';

const REFRESH_MS = 5 * 60_000;

export interface ReviewServerOptions {
  host: string;
  port: number;
  tlsCertFile: string;
  tlsKeyFile: string;
  kubeConfig: KubeConfig;
  storage: StorageClient;
  sites: SiteDirectory;
  limits: { maxArtifactBytes: number; archive: ArchiveLimits };
  scratchDir: string;
  previews?: Router;
  logger: Logger;
}

export async function startReviewServer(o: ReviewServerOptions): Promise<{ server: Server; close(): Promise<void> }> {
  const core = o.kubeConfig.makeApiClient(CoreV1Api);
  let requestHeader = await loadRequestHeaderConfig(core);
  const tls = { key: await readFile(o.tlsKeyFile), cert: await readFile(o.tlsCertFile) };
  const app = createReviewApi({
    requestHeader: () => requestHeader,
    access: new AccessReviewer(o.kubeConfig.makeApiClient(AuthorizationV1Api)),
    storage: o.storage,
    sites: o.sites,
    ...(o.previews ? { previews: o.previews } : {}),
    limits: o.limits,
    scratchDir: o.scratchDir,
    logger: o.logger,
  });
  // a push may take a while over a slow link: the request (its body) is bounded, generously
  const server = createTimedServer(
    app,
    { headersMs: 10_000, requestMs: 10 * 60_000, keepAliveMs: 65_000 },
    { ...tls, ca: requestHeader.clientCa, requestCert: true, rejectUnauthorized: false },
  ) as Server;
  server.listen(o.port, o.host);
  await once(server, 'listening');
  const refresh = setInterval(() => {
    loadRequestHeaderConfig(core).then(
      (next) => {
        if (next.clientCa !== requestHeader.clientCa) {
          server.setSecureContext({ ...tls, ca: next.clientCa });
          o.logger.info('front-proxy CA changed: now trusting the new one');
        }
        requestHeader = next;
      },
      (err: unknown) => o.logger.warn('could not re-read the front-proxy settings; keeping the last ones', { error: String(err) }),
    );
  }, REFRESH_MS);
  refresh.unref();
  o.logger.info('review API listening', { port: o.port });
  return {
    server,
    async close() {
      clearInterval(refresh);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
