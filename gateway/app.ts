/**
 * The model gateway's HTTP face: what codex and the runner's preflight call (POST /v1/responses,
 * GET /v1/models[/id]), forwarded to the real endpoint with the real key, streamed through as it
 * arrives (undici; nothing is buffered but the request body, read to check its model).
 *
 * Before a call goes upstream: the per-attempt credential is verified (signature, audience,
 * expiry) and its attempt must still be live; a /responses call must name the job's model, and
 * the job's budget must have room (the request is counted then, its tokens when the response
 * reports them). An upstream 429 sets one backoff for every job (backoff.ts); a call waits it
 * out if the attempt's deadline allows, else it is refused as LLMRateLimited. Every refusal that
 * is the job's own (budget, rate limit, model) is reported to the manager with the usage.
 */
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { brotliDecompress, gunzip, inflate, zstdDecompress } from 'node:zlib';
import express, { type Request, type Response } from 'express';
import type { Dispatcher } from 'undici';
import { request as upstreamRequest } from 'undici';
import { installErrorHandling } from '../common/error-middleware.js';
import type { GatewayClaims, GatewayCredentials } from '../common/gateway-credential.js';
import type { Logger } from '../common/logger.js';
import type { GatewayRefusalReason, Usage, UsageReport } from '../common/schemas.js';
import { bearerToken } from '../common/tokens.js';
import type { AttemptVerdict } from './attempts.js';
import type { SharedBackoff } from './backoff.js';
import { GatewayError, openAiErrorEnvelope } from './errors.js';
import type { UsageLedger } from './ledger.js';
import type { GatewayMetrics } from './metrics.js';
import { UsageTap } from './usage-tap.js';

export interface GatewayDeps {
  upstreamUrl: string;
  llmKey: string;
  maxRequestBytes: number;
  upstreamHeadersTimeoutMs: number;
  upstreamBodyTimeoutMs: number;
  credentials: GatewayCredentials;
  attempts: { readonly synced: boolean; verdict(claims: GatewayClaims): AttemptVerdict; recordedUsage(jobId: string): Usage };
  ledger: UsageLedger;
  backoff: SharedBackoff;
  reporter: { report(report: UsageReport): void };
  metrics: GatewayMetrics;
  logger: Logger;
  upstream: Dispatcher;
}

/** Request headers passed upstream; the rest (authorization above all, accept-encoding: the usage tap reads the body) stay here. */
const FORWARDED_REQUEST_HEADERS = [
  'content-type',
  'accept',
  'content-encoding',
  'openai-beta',
  'user-agent',
  'x-stainless-lang',
  'originator',
  'session_id',
  'version',
];
/** Response headers not passed back: hop-by-hop, and lengths node recomputes. */
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'trailer',
  'te',
]);

const decompressors: Record<string, (b: Buffer) => Promise<Buffer>> = {
  gzip: promisify(gunzip),
  deflate: promisify(inflate),
  br: promisify(brotliDecompress),
  zstd: promisify(zstdDecompress),
};

export function createGatewayApp(d: GatewayDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');

  app.get('/healthz', (_req, res) => void res.json({ ok: true }));
  app.get('/readyz', (_req, res) => void res.status(d.attempts.synced ? 200 : 503).json({ ready: d.attempts.synced }));
  app.get('/metrics', async (_req, res) => {
    res.setHeader('content-type', d.metrics.registry.contentType).send(await d.metrics.registry.metrics());
  });

  /** The caller's attempt, or a refusal: a valid credential of a live attempt. */
  async function attempt(req: Request, route: string): Promise<GatewayClaims> {
    if (!d.attempts.synced) throw new GatewayError('NotReady', 'the gateway is starting; retry');
    const token = bearerToken(req.headers.authorization);
    if (!token) throw new GatewayError('TokenMissing', "a model call needs the attempt's gateway credential as a bearer token");
    let claims: GatewayClaims;
    try {
      claims = await d.credentials.verify(token);
    } catch (err) {
      // a TokenError already carries its code (TokenExpired, TokenInvalid)
      d.metrics.requests.inc({ route, outcome: 'unauthorized' });
      throw err;
    }
    const verdict = d.attempts.verdict(claims);
    if (!verdict.live) {
      d.metrics.requests.inc({ route, outcome: 'attempt_ended' });
      throw new GatewayError('AttemptEnded', verdict.message);
    }
    return claims;
  }

  function refuse(claims: GatewayClaims, route: string, reason: GatewayRefusalReason, message: string): never {
    const outcome = { LLMBudgetExceeded: 'budget_exceeded', LLMRateLimited: 'rate_limited', ModelNotAllowed: 'model_not_allowed' }[reason];
    d.metrics.requests.inc({ route, outcome });
    d.reporter.report({ job_id: claims.jobId, attempt: claims.attempt, usage: d.ledger.usage(claims.jobId), refusal: { reason, message } });
    d.logger.warn('model call refused', { job: `${claims.namespace}/${claims.name}`, attempt: claims.attempt, reason, message });
    throw new GatewayError(reason, message);
  }

  app.get(['/v1/models', '/v1/models/:id'], async (req, res) => {
    const claims = await attempt(req, 'models');
    await forward(req, res, { claims, route: 'models', body: null, counted: false });
  });

  app.post('/v1/responses', async (req, res) => {
    const claims = await attempt(req, 'responses');
    const body = await readBody(req, d.maxRequestBytes);
    const model = await requestedModel(body, req.headers['content-encoding']);
    if (model !== claims.model)
      refuse(claims, 'responses', 'ModelNotAllowed', `this job may use model ${claims.model} only, not ${JSON.stringify(model)}`);
    const admission = d.ledger.admit(claims.jobId, claims.budget, d.attempts.recordedUsage(claims.jobId));
    if (!admission.admitted) refuse(claims, 'responses', 'LLMBudgetExceeded', `budget exceeded: ${admission.message}`);
    d.reporter.report({ job_id: claims.jobId, attempt: claims.attempt, usage: admission.usage });
    await forward(req, res, { claims, route: 'responses', body, counted: true });
  });

  async function forward(
    req: Request,
    res: Response,
    call: { claims: GatewayClaims; route: string; body: Buffer | null; counted: boolean },
  ): Promise<void> {
    const { claims, route } = call;
    const headers: Record<string, string> = { authorization: `Bearer ${d.llmKey}` };
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    const url = d.upstreamUrl + req.originalUrl.replace(/^\/v1/, '');
    const deadline = claims.expiresAt * 1000;
    for (;;) {
      const wait = d.backoff.waitMs();
      if (wait > 0) {
        if (Date.now() + wait > deadline) {
          refuse(
            claims,
            route,
            'LLMRateLimited',
            `the model endpoint is rate-limited for ${Math.ceil(wait / 1000)} s more, past this attempt's deadline`,
          );
        }
        d.metrics.rateLimitWait.observe(wait / 1000);
        await new Promise((r) => setTimeout(r, wait));
      }
      const sent = performance.now();
      let upstream: Dispatcher.ResponseData;
      try {
        upstream = await upstreamRequest(url, {
          method: req.method as Dispatcher.HttpMethod,
          headers,
          body: call.body ?? undefined,
          dispatcher: d.upstream,
          headersTimeout: d.upstreamHeadersTimeoutMs,
          bodyTimeout: d.upstreamBodyTimeoutMs,
        });
      } catch (err) {
        d.metrics.requests.inc({ route, outcome: 'upstream_error' });
        throw new GatewayError('UpstreamUnavailable', `the model endpoint could not be reached: ${(err as Error).message}`);
      }
      d.metrics.firstByte.observe((performance.now() - sent) / 1000);
      if (upstream.statusCode === 429) {
        d.metrics.upstream429.inc();
        const retryAfter = upstream.headers['retry-after'];
        const waited = d.backoff.rateLimited(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
        await upstream.body.dump();
        d.logger.warn('upstream rate limit: every call waits', { wait_ms: waited });
        continue;
      }
      d.backoff.succeeded();
      res.status(upstream.statusCode);
      for (const [name, value] of Object.entries(upstream.headers)) {
        if (value !== undefined && !DROPPED_RESPONSE_HEADERS.has(name)) res.setHeader(name, value);
      }
      const contentType = String(upstream.headers['content-type'] ?? '');
      const tap = new UsageTap(contentType.includes('text/event-stream'));
      upstream.body.on('data', (chunk: Buffer) => tap.write(chunk));
      res.flushHeaders();
      try {
        await pipeline(upstream.body, res);
        tap.end();
      } finally {
        if (call.counted && tap.usage) {
          const usage = d.ledger.addTokens(claims.jobId, tap.usage);
          d.metrics.tokens.inc({ kind: 'input' }, tap.usage.inputTokens);
          d.metrics.tokens.inc({ kind: 'output' }, tap.usage.outputTokens);
          d.reporter.report({ job_id: claims.jobId, attempt: claims.attempt, usage });
        }
      }
      d.metrics.requests.inc({ route, outcome: upstream.statusCode < 400 ? 'ok' : 'upstream_error' });
      return;
    }
  }

  installErrorHandling(app, {
    logger: d.logger,
    envelope: openAiErrorEnvelope,
    routesHint: 'the gateway serves POST /v1/responses and GET /v1/models',
  });
  return app;
}

async function readBody(req: Request, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new GatewayError('PayloadTooLarge', `the request body is larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new GatewayError('PayloadTooLarge', `the request body is larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The top-level `model` of a Responses API request (decompressed first if the client compressed it). */
async function requestedModel(body: Buffer, encoding: string | undefined): Promise<string> {
  let raw = body;
  if (encoding && encoding !== 'identity') {
    const decompress = decompressors[encoding];
    if (!decompress) throw new GatewayError('BadRequest', `unsupported content-encoding ${encoding}`);
    raw = await decompress(body).catch(() => {
      throw new GatewayError('BadRequest', `the body is not valid ${encoding}`);
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new GatewayError('BadRequest', 'the request body is not JSON');
  }
  const model = (parsed as { model?: unknown } | null)?.model;
  if (typeof model !== 'string') throw new GatewayError('BadRequest', 'the request names no model');
  return model;
}
