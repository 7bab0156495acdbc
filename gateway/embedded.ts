/**
 * The gateway in-process, for `pagewright run` (cli/local-run.ts): the same app, with one job
 * and one attempt instead of a watch on PagewrightJobs, usage kept here instead of reported to a
 * manager. So on a laptop too the key stays with the gateway: the runner and the agent get a
 * per-run credential, refused once the run has ended.
 */
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { type Budget, GatewayCredentials } from '../common/gateway-credential.js';
import type { Logger } from '../common/logger.js';
import { NO_USAGE, type Usage, type UsageReport } from '../common/schemas.js';
import { SMALL_API_TIMEOUTS, listen } from '../common/server-timeouts.js';
import { GATEWAY_DEFAULTS, createGatewayApp } from './app.js';
import { SharedBackoff } from './backoff.js';
import { UsageLedger } from './ledger.js';
import { GatewayMetrics } from './metrics.js';
import { randomBytes } from 'node:crypto';

export interface EmbeddedGateway {
  /** What the runner gets as its model endpoint (…/v1) and key. */
  url: string;
  credential: string;
  usage(): Usage;
  /** The gateway's refusal of the job's own calls, if any (budget, model, rate limit). */
  refusal(): UsageReport['refusal'] | null;
  /** The run is over: its credential is refused from now on. */
  end(): void;
  close(): Promise<void>;
}

export async function startEmbeddedGateway(o: {
  upstreamUrl: string;
  llmKey: string;
  jobId: string;
  model: string;
  budget: Budget;
  ttlSeconds: number;
  logger: Logger;
}): Promise<EmbeddedGateway> {
  const credentials = new GatewayCredentials(randomBytes(32).toString('hex'));
  const credential = await credentials.issue({
    jobId: o.jobId,
    namespace: 'local',
    name: o.jobId,
    attempt: 1,
    model: o.model,
    budget: o.budget,
    ttlSeconds: o.ttlSeconds,
  });
  let live = true;
  let usage: Usage = NO_USAGE;
  let refusal: UsageReport['refusal'] | null = null;
  const upstream = new Agent({ keepAliveTimeout: 30_000 });
  const app = createGatewayApp({
    upstreamUrl: o.upstreamUrl,
    llmKey: o.llmKey,
    ...GATEWAY_DEFAULTS,
    credentials,
    attempts: {
      synced: true,
      verdict: (claims) => (live && claims.jobId === o.jobId ? { live: true } : { live: false, message: `run ${claims.jobId} has ended` }),
      recordedUsage: () => usage,
    },
    ledger: new UsageLedger(),
    backoff: new SharedBackoff(1000, 60_000),
    reporter: {
      report: (r) => {
        usage = r.usage;
        if (r.refusal) refusal = r.refusal;
      },
    },
    metrics: new GatewayMetrics(),
    logger: o.logger,
    upstream,
  });
  const server = await listen(app, 0, '127.0.0.1', { ...SMALL_API_TIMEOUTS, requestMs: 120_000 });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    credential,
    usage: () => usage,
    refusal: () => refusal,
    end: () => {
      live = false;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await upstream.close();
    },
  };
}
