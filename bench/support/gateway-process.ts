/**
 * The gateway's app (gateway/app.ts) in its own process, for bench/gateway.ts: everything it does
 * per call runs (credential, live attempt, model, budget, usage tap, report), with one job that is
 * always live and reports that go nowhere (no watch on PagewrightJobs, no manager). Prints its
 * URL on stdout.
 */
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { GatewayCredentials } from '../../common/gateway-credential.js';
import { silentLogger } from '../../common/logger.js';
import { listen } from '../../common/server-timeouts.js';
import { GATEWAY_DEFAULTS, createGatewayApp } from '../../gateway/app.js';
import { SharedBackoff } from '../../gateway/backoff.js';
import { UsageLedger } from '../../gateway/ledger.js';
import { GatewayMetrics } from '../../gateway/metrics.js';

const app = createGatewayApp({
  upstreamUrl: process.env.BENCH_UPSTREAM_URL!,
  llmKey: process.env.BENCH_UPSTREAM_KEY!,
  ...GATEWAY_DEFAULTS,
  credentials: new GatewayCredentials(process.env.BENCH_GATEWAY_SECRET!),
  attempts: { synced: true, verdict: () => ({ live: true }), recordedUsage: () => ({ requests: 0, inputTokens: 0, outputTokens: 0 }) },
  ledger: new UsageLedger(),
  backoff: new SharedBackoff(1000, 60_000),
  reporter: { report: () => {} },
  metrics: new GatewayMetrics(),
  logger: silentLogger,
  upstream: new Agent({ keepAliveTimeout: 60_000 }),
});
const server = await listen(app, 0, '127.0.0.1', { headersMs: 30_000, requestMs: 120_000, keepAliveMs: 65_000 });
console.log(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`);
