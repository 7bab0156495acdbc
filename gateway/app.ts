/**
 * The model gateway's HTTP face. It forwards exactly two things (DESIGN "The gateway's
 * contract"), each rebuilt here rather than passed through:
 *   - `POST /v1/responses` for the job's model: the body bounded (a Content-Length within the
 *     limit, no compression, a bounded shape), parsed once, checked against the allowlist
 *     (request-policy.ts) and re-serialised from the checked object; `max_output_tokens`
 *     clamped to what the budget has left, and the answer streamed back as it arrives (undici);
 *   - `GET /v1/models/{id}` for the job's own model, and `GET /v1/models`, answered from a cache
 *     (models-cache.ts).
 * Routes are matched on the decoded path (routes.ts) and the upstream URL is built from the
 * route, never from the request's URL; anything else is a 404 and reaches nothing.
 *
 * Before a call goes upstream: the per-attempt credential is verified (signature, audience,
 * expiry) and its attempt must still be live; the job's budget must have room (the request is
 * counted then, its output tokens reserved, its tokens settled when the answer ends, read to its
 * end even if the client has gone: ledger.ts). Request bodies hold at most a fixed share of
 * memory across all calls (byte-budget.ts; past it 503 with Retry-After). An upstream 429 on
 * the Responses route sets one backoff for every job (backoff.ts); a call waits it out if the
 * attempt's deadline allows, else it is refused as LLMRateLimited. Every refusal that is the
 * job's own (budget, rate limit, model, hosted tool, input, field) is reported to the manager
 * and ends the job with that reason.
 */
import { once } from 'node:events';
import express, { type Request, type Response } from 'express';
import type { Dispatcher } from 'undici';
import { request as upstreamRequest } from 'undici';
import { installErrorHandling } from '../common/error-middleware.js';
import type { GatewayClaims, GatewayCredentials } from '../common/gateway-credential.js';
import type { Logger } from '../common/logger.js';
import { GatewayRefusalReason, type Usage, type UsageReport } from '../common/schemas.js';
import { bearerToken } from '../common/tokens.js';
import type { AttemptVerdict } from './attempts.js';
import type { SharedBackoff } from './backoff.js';
import { ByteBudget } from './byte-budget.js';
import { GatewayError, openAiErrorEnvelope } from './errors.js';
import { jsonShape } from './json-shape.js';
import { type Reservation, type UsageLedger, budgetExceeded } from './ledger.js';
import type { GatewayMetrics } from './metrics.js';
import { type CachedAnswer, ModelsCache } from './models-cache.js';
import { admitRequest } from './request-policy.js';
import { type Route, matchRoute, upstreamPath } from './routes.js';
import { UsageTap } from './usage-tap.js';

/** The gateway's limits and timeouts by default: the config's defaults (config.ts), and what the embedded gateway uses. */
export const GATEWAY_DEFAULTS = {
  maxRequestBytes: 16 * 1024 * 1024,
  maxBufferedBytes: 192 * 1024 * 1024,
  allowedHostedTools: [] as readonly string[],
  modelsCacheSeconds: 300,
  /**
   * The most output tokens one call may produce (its max_output_tokens, when the budget has more
   * left): each call reserves what it may produce, so without a per-call bound one call would
   * hold a job's whole remaining budget and a second call in parallel would find none left.
   * 128,000 is the largest output of OpenAI's current models.
   */
  maxOutputTokensPerCall: 128_000,
  upstreamHeadersTimeoutMs: 120_000,
  upstreamBodyTimeoutMs: 300_000,
};

export interface GatewayDeps {
  upstreamUrl: string;
  llmKey: string;
  maxRequestBytes: number;
  /** The most memory request bodies may hold across all calls in flight (see BODY_COST). */
  maxBufferedBytes: number;
  /** Hosted tool types requests may declare (default none: function and custom tools only). */
  allowedHostedTools: readonly string[];
  /** The service tier every request gets (default: none sent). */
  serviceTier?: string | undefined;
  modelsCacheSeconds: number;
  maxOutputTokensPerCall: number;
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

/**
 * What a request body of n bytes costs while it is handled: the bytes as read, the string
 * JSON.parse reads them as, the parsed strings, and the re-serialised string and bytes sent
 * upstream (5.8x measured with a 15 MiB body of one long string); and what each of its parsed
 * nodes costs besides (an object, an array or a member: tens of bytes in V8, and a copy when
 * the allowlist rebuilds it). test/integration/gateway-hostile.test.ts holds the gateway's RSS
 * under its pod limit with these.
 */
const BODY_COST = 6;
const NODE_COST = 256;
/** What a body may nest and hold (a codex request nests about 12 deep, and holds some 10 nodes per conversation item). */
const SHAPE_LIMITS = { depth: 64, nodes: 250_000 };
/** A call refused for memory tries again after this (codex retries a 503 by itself). */
const OVERLOADED_RETRY_AFTER_SECONDS = 1;

/** Response headers passed back: what clients read; not the organisation's name, nor cookies. */
const FORWARDED_RESPONSE_HEADER = /^(content-type|x-request-id|openai-processing-ms|retry-after|x-ratelimit-[a-z-]+)$/;

const REFUSAL_OUTCOMES: Record<GatewayRefusalReason, string> = {
  LLMBudgetExceeded: 'budget_exceeded',
  LLMRateLimited: 'rate_limited',
  ModelNotAllowed: 'model_not_allowed',
  HostedToolNotAllowed: 'hosted_tool_not_allowed',
  InputNotAllowed: 'input_not_allowed',
  RequestNotAllowed: 'request_not_allowed',
};

export function createGatewayApp(d: GatewayDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  const buffered = new ByteBudget(d.maxBufferedBytes);
  const models = new ModelsCache(d.modelsCacheSeconds * 1000);
  const allowedHostedTools = new Set(d.allowedHostedTools);
  d.metrics.observe({ bufferedBytes: () => buffered.used, trackedJobs: () => d.ledger.size });

  app.get('/healthz', (_req, res) => void res.json({ ok: true }));
  app.get('/readyz', (_req, res) => void res.status(d.attempts.synced ? 200 : 503).json({ ready: d.attempts.synced }));
  app.get('/metrics', async (_req, res) => {
    res.setHeader('content-type', d.metrics.registry.contentType).send(await d.metrics.registry.metrics());
  });

  app.use(async (req, res) => {
    const match = matchRoute(req.method, req.originalUrl);
    if (!match.route) {
      d.metrics.requests.inc({ route: 'none', outcome: 'not_found' });
      throw new GatewayError('NotFound', `no route ${req.method} ${req.originalUrl.slice(0, 200)}: ${match.why}`);
    }
    const route = match.route;
    const claims = await attempt(req, route.name);
    if (route.name === 'responses') await responses(req, res, claims);
    else await modelsRoute(res, claims, route);
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

  /** Refuses the job's call for the job's own sake: counted, reported to the manager (it ends the job) and logged. */
  function refuse(claims: GatewayClaims, route: string, reason: GatewayRefusalReason, message: string): never {
    d.metrics.requests.inc({ route, outcome: REFUSAL_OUTCOMES[reason] });
    d.reporter.report({ job_id: claims.jobId, attempt: claims.attempt, usage: d.ledger.usage(claims.jobId), refusal: { reason, message } });
    d.logger.warn('model call refused', { job: `${claims.namespace}/${claims.name}`, attempt: claims.attempt, reason, message });
    throw new GatewayError(reason, message);
  }

  async function responses(req: Request, res: Response, claims: GatewayClaims): Promise<void> {
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined && encoding !== 'identity')
      throw new GatewayError(
        'UnsupportedMediaType',
        `compressed request bodies (content-encoding ${encoding}) are not accepted; send JSON as is`,
      );
    if (!String(req.headers['content-type'] ?? '').startsWith('application/json'))
      throw new GatewayError('UnsupportedMediaType', 'the request body must be application/json');
    const declared = req.headers['content-length'];
    if (declared === undefined) throw new GatewayError('LengthRequired', 'a request body needs a Content-Length');
    const length = Number(declared);
    if (!Number.isSafeInteger(length) || length < 0) throw new GatewayError('BadRequest', 'the Content-Length is not a byte count');
    if (length > d.maxRequestBytes) throw new GatewayError('PayloadTooLarge', `the request body is larger than ${d.maxRequestBytes} bytes`);
    const share = buffered.share();
    const hold = (bytes: number) => {
      if (share.take(bytes)) return;
      d.metrics.requests.inc({ route: 'responses', outcome: 'overloaded' });
      res.setHeader('Retry-After', String(OVERLOADED_RETRY_AFTER_SECONDS));
      throw new GatewayError('Overloaded', 'the gateway holds as many request bodies as its memory allows; retry shortly');
    };
    try {
      hold(length * BODY_COST);
      const { body, reservation } = await admit(req, claims, length, hold);
      await forward(res, claims, body, reservation, () => share.release());
    } finally {
      share.release();
    }
  }

  /** Reads, checks and counts a Responses call: the body to send upstream and its reservation. */
  async function admit(
    req: Request,
    claims: GatewayClaims,
    length: number,
    hold: (bytes: number) => void,
  ): Promise<{ body: Buffer; reservation: Reservation }> {
    const raw = await readBody(req, length);
    const shape = jsonShape(raw, SHAPE_LIMITS);
    if (shape.depth > SHAPE_LIMITS.depth) throw new GatewayError('BadRequest', `the body nests deeper than ${SHAPE_LIMITS.depth} levels`);
    if (shape.nodes > SHAPE_LIMITS.nodes)
      throw new GatewayError('PayloadTooLarge', `the body holds more than ${SHAPE_LIMITS.nodes} values, objects and arrays`);
    hold(shape.nodes * NODE_COST);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new GatewayError('BadRequest', 'the request body is not JSON');
    }
    const recorded = d.attempts.recordedUsage(claims.jobId);
    const spent = budgetExceeded({ ...recorded, ...maxOf(d.ledger.usage(claims.jobId), recorded) }, claims.budget);
    if (spent) refuse(claims, 'responses', 'LLMBudgetExceeded', `budget exceeded: ${spent}`);
    let checked: ReturnType<typeof admitRequest>;
    try {
      checked = admitRequest(parsed, {
        model: claims.model,
        allowedHostedTools,
        serviceTier: d.serviceTier,
        maxOutputTokens: Math.min(d.maxOutputTokensPerCall, d.ledger.outputTokensLeft(claims.jobId, claims.budget, recorded)),
      });
    } catch (err) {
      const reason = err instanceof GatewayError ? GatewayRefusalReason.safeParse(err.code) : null;
      if (reason?.success) refuse(claims, 'responses', reason.data, err instanceof Error ? err.message : String(err));
      throw err;
    }
    const admission = d.ledger.admit(claims.jobId, claims.budget, recorded, checked.maxOutputTokens);
    if (!admission.admitted) refuse(claims, 'responses', 'LLMBudgetExceeded', `budget exceeded: ${admission.message}`);
    d.reporter.report({ job_id: claims.jobId, attempt: claims.attempt, usage: admission.usage });
    return { body: Buffer.from(JSON.stringify(checked.body)), reservation: admission.reservation };
  }

  async function forward(res: Response, claims: GatewayClaims, body: Buffer, reservation: Reservation, sent: () => void): Promise<void> {
    const route = 'responses';
    let upstream: Dispatcher.ResponseData | null = null;
    try {
      upstream = await send(claims, body);
    } finally {
      sent();
      // a call that never got an answer spent nothing
      if (!upstream) settle(claims, reservation, { inputTokens: 0, outputTokens: 0 }, 0);
    }
    res.status(upstream.statusCode);
    copyResponseHeaders(upstream, res);
    const tap = new UsageTap(String(upstream.headers['content-type'] ?? '').includes('text/event-stream'));
    res.flushHeaders();
    const completed = await relay(upstream.body, res, tap);
    // tokens as the answer reported them; an answer that ended without them is charged its
    // reservation (an error answer costs nothing: it generated nothing)
    const reported = tap.usage ?? (upstream.statusCode === 200 ? null : { inputTokens: 0, outputTokens: 0 });
    settle(claims, reservation, reported, Math.ceil(body.length / 4));
    d.metrics.requests.inc({ route, outcome: !completed ? 'upstream_cut' : upstream.statusCode < 400 ? 'ok' : 'upstream_error' });
  }

  /** Sends the call upstream, waiting out the shared backoff (429s set it); the answer's headers. */
  async function send(claims: GatewayClaims, body: Buffer): Promise<Dispatcher.ResponseData> {
    const deadline = claims.expiresAt * 1000;
    for (;;) {
      const wait = d.backoff.waitMs();
      if (wait > 0) {
        if (Date.now() + wait > deadline) {
          const message = `the model endpoint is rate-limited for ${Math.ceil(wait / 1000)} s more, past this attempt's deadline`;
          refuse(claims, 'responses', 'LLMRateLimited', message);
        }
        d.metrics.rateLimitWait.observe(wait / 1000);
        await new Promise((r) => setTimeout(r, wait));
      }
      const upstream = await call('responses', upstreamPath({ name: 'responses' }), 'POST', body, 'text/event-stream');
      if (upstream.statusCode === 429) {
        d.metrics.upstream429.inc();
        const retryAfter = upstream.headers['retry-after'];
        const waited = d.backoff.rateLimited(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
        await upstream.body.dump();
        d.logger.warn('upstream rate limit: every call waits', { wait_ms: waited });
        continue;
      }
      d.backoff.succeeded();
      return upstream;
    }
  }

  function settle(
    claims: GatewayClaims,
    reservation: Reservation,
    reported: { inputTokens: number; outputTokens: number } | null,
    input: number,
  ) {
    const usage = d.ledger.settle(reservation, reported, input);
    const spent = reported ?? { inputTokens: input, outputTokens: reservation.outputTokens };
    d.metrics.tokens.inc({ kind: 'input' }, spent.inputTokens);
    d.metrics.tokens.inc({ kind: 'output' }, spent.outputTokens);
    if (!reported) d.metrics.unreportedAnswers.inc();
    if (usage && (spent.inputTokens > 0 || spent.outputTokens > 0))
      d.reporter.report({ job_id: claims.jobId, attempt: claims.attempt, usage });
  }

  async function modelsRoute(res: Response, claims: GatewayClaims, route: Exclude<Route, { name: 'responses' }>): Promise<void> {
    // the preflight asks for the job's own model; another model is not this job's to look up
    if (route.name === 'model' && route.id !== claims.model)
      throw new GatewayError('ModelNotAllowed', `this job may use model ${claims.model} only, not ${JSON.stringify(route.id)}`);
    const path = upstreamPath(route);
    const answer = await models.get(path, async (): Promise<CachedAnswer> => {
      const upstream = await call('models', path, 'GET', null, 'application/json');
      const body = Buffer.from(await upstream.body.arrayBuffer());
      return { status: upstream.statusCode, contentType: String(upstream.headers['content-type'] ?? 'application/json'), body };
    });
    d.metrics.requests.inc({ route: 'models', outcome: answer.cached ? 'cached' : answer.status < 400 ? 'ok' : 'upstream_error' });
    res.status(answer.status).setHeader('content-type', answer.contentType).end(answer.body);
  }

  /**
   * One upstream request, with the real key and no header of the client's: nothing it sends
   * (OpenAI-Organization, OpenAI-Project, OpenAI-Beta, ...) can pick another project or feature.
   */
  async function call(
    route: string,
    path: string,
    method: 'GET' | 'POST',
    body: Buffer | null,
    accept: string,
  ): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = { authorization: `Bearer ${d.llmKey}`, accept, 'user-agent': 'pagewright-gateway' };
    if (body) headers['content-type'] = 'application/json';
    const sent = performance.now();
    try {
      const upstream = await upstreamRequest(d.upstreamUrl + path, {
        method,
        headers,
        body: body ?? undefined,
        dispatcher: d.upstream,
        headersTimeout: d.upstreamHeadersTimeoutMs,
        bodyTimeout: d.upstreamBodyTimeoutMs,
      });
      d.metrics.firstByte.observe((performance.now() - sent) / 1000);
      return upstream;
    } catch (err) {
      d.metrics.requests.inc({ route, outcome: 'upstream_error' });
      throw new GatewayError('UpstreamUnavailable', `the model endpoint could not be reached: ${(err as Error).message}`);
    }
  }

  installErrorHandling(app, {
    logger: d.logger,
    envelope: openAiErrorEnvelope,
    // a refused call (Overloaded, over budget) is read to its end, so codex sees the 503 and its Retry-After, not a reset
    readRefusedBodiesUpTo: d.maxRequestBytes,
    routesHint: 'the gateway serves POST /v1/responses and GET /v1/models[/{id}]',
  });
  return app;
}

function maxOf(a: Usage, b: Usage): Usage {
  return {
    requests: Math.max(a.requests, b.requests),
    inputTokens: Math.max(a.inputTokens, b.inputTokens),
    outputTokens: Math.max(a.outputTokens, b.outputTokens),
  };
}

function copyResponseHeaders(upstream: Dispatcher.ResponseData, res: Response): void {
  for (const [name, value] of Object.entries(upstream.headers)) {
    if (value !== undefined && FORWARDED_RESPONSE_HEADER.test(name)) res.setHeader(name, value);
  }
}

/**
 * Streams the upstream's answer to the client as it arrives, every chunk seen by the usage tap.
 * If the client goes away the answer is still read to its end (bounded by the upstream body
 * timeout and the call's clamped max_output_tokens), so its usage is counted: a client that
 * drops its stream does not get its tokens for free. Returns whether the upstream completed.
 */
async function relay(body: Dispatcher.ResponseData['body'], res: Response, tap: UsageTap): Promise<boolean> {
  // the client may have gone while the call waited for the upstream's headers
  let clientGone = res.destroyed;
  const onClose = () => {
    if (res.writableFinished) return;
    clientGone = true;
    body.resume();
  };
  const onDrain = () => body.resume();
  res.on('close', onClose);
  res.on('drain', onDrain);
  body.on('data', (chunk: Buffer) => {
    tap.write(chunk);
    if (!clientGone && !res.write(chunk)) body.pause();
  });
  try {
    await once(body, 'end');
    tap.end();
    if (!clientGone) res.end();
    return true;
  } catch {
    // the upstream cut its answer: the client gets a torn stream, as it would have directly
    res.destroy();
    return false;
  } finally {
    res.off('close', onClose);
    res.off('drain', onDrain);
  }
}

/** Exactly `length` bytes of the request's body (its Content-Length, already within the limit). */
async function readBody(req: Request, length: number): Promise<Buffer> {
  const body = Buffer.allocUnsafe(length);
  let at = 0;
  for await (const chunk of req) {
    const piece = chunk as Buffer;
    if (at + piece.length > length) throw new GatewayError('BadRequest', 'the body is longer than its Content-Length');
    piece.copy(body, at);
    at += piece.length;
  }
  if (at !== length) throw new GatewayError('BadRequest', 'the body ended before its Content-Length');
  return body;
}
