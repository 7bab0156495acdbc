/**
 * The gateway's app (gateway/app.ts) in its own process, for bench/gateway.ts: everything it does
 * per call runs (credential, live attempt, model, budget, usage tap, report), with one job that is
 * always live and reports that go nowhere (no watch on PagewrightJobs, no manager). Prints its
 * URL on stdout.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { GatewayCredentials } from '../../common/gateway-credential.js';
import { silentLogger } from '../../common/logger.js';
import { applyServerTimeouts } from '../../common/server-timeouts.js';
import { createGatewayApp } from '../../gateway/app.js';
import { SharedBackoff } from '../../gateway/backoff.js';
import { UsageLedger } from '../../gateway/ledger.js';
import { GatewayMetrics } from '../../gateway/metrics.js';

const app = createGatewayApp({
  upstreamUrl: process.env.BENCH_UPSTREAM_URL!,
  llmKey: process.env.BENCH_UPSTREAM_KEY!,
  maxRequestBytes: 32 * 1024 * 1024,
  upstreamHeadersTimeoutMs: 60_000,
  upstreamBodyTimeoutMs: 60_000,
  credentials: new GatewayCredentials(process.env.BENCH_GATEWAY_SECRET!),
  attempts: { synced: true, verdict: () => ({ live: true }), recordedUsage: () => ({ requests: 0, inputTokens: 0, outputTokens: 0 }) },
  ledger: new UsageLedger(),
  backoff: new SharedBackoff(1000, 60_000),
  reporter: { report: () => {} },
  metrics: new GatewayMetrics(),
  logger: silentLogger,
  upstream: new Agent({ keepAliveTimeout: 60_000 }),
});
const server = applyServerTimeouts(app.listen(0, '127.0.0.1'), { headersMs: 30_000, requestMs: 120_000, keepAliveMs: 65_000 });
await once(server, 'listening');
console.log(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`);
