import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import express from 'express';
import { request } from 'undici';
import { installErrorHandling } from '../../common/error-middleware.js';
import { ErrorCode, FailureReason, HTTP_STATUS, HttpErrorCode, PagewrightError, toJobFailure } from '../../common/errors.js';
import type { LogFields, Logger } from '../../common/logger.js';
import { HttpStatusError, readErrorAnswer } from '../../common/retry.js';
import { openAiErrorEnvelope } from '../../gateway/errors.js';

describe('the error vocabulary (common/errors.ts)', () => {
  /**
   * The statuses as rules, not a copy of the table: what clients read (the runner's storage
   * client, codex through the gateway) depends on them, so a code that breaks its family's rule
   * fails here.
   */
  it('gives every code its HTTP status, by the rules clients rely on', () => {
    expect(Object.keys(HTTP_STATUS).sort()).to.deep.equal([...ErrorCode.options].sort());
    const statuses = (codes: readonly ErrorCode[]) => Object.fromEntries(codes.map((c) => [c, HTTP_STATUS[c]]));
    const all = (codes: readonly ErrorCode[], status: number) => Object.fromEntries(codes.map((c) => [c, status]));
    // a job's failure reasons: the refusals are 4xx (403, not 429, for the gateway's: codex retries
    // 429 and 5xx by itself, and a spent budget must not look like a rate limit); the rest are 500
    const refusals = {
      ModelNotAllowed: 403,
      BudgetNotAllowed: 403,
      LLMBudgetExceeded: 403,
      LLMRateLimited: 403,
      HostedToolNotAllowed: 403,
      InputNotAllowed: 403,
      RequestNotAllowed: 403,
      UnsafeOutput: 422,
      SiteNotFound: 404,
      UnsafeArchive: 422,
      PublishConflict: 409,
    } as const;
    const otherReasons = FailureReason.options.filter((r) => !(r in refusals));
    expect(statuses(FailureReason.options)).to.deep.equal({ ...all(otherReasons, 500), ...refusals });
    // who-are-you is 401, you-may-not (any more) is 403
    expect(statuses(['TokenMissing', 'TokenInvalid', 'TokenExpired', 'Unauthorized'])).to.deep.equal(
      all(['TokenMissing', 'TokenInvalid', 'TokenExpired', 'Unauthorized'], 401),
    );
    expect(statuses(['TokenForbidden', 'AttemptEnded', 'Forbidden'])).to.deep.equal(
      all(['TokenForbidden', 'AttemptEnded', 'Forbidden'], 403),
    );
    // by name: *NotFound is 404, Invalid* and *Mismatch of a request's own content are 400
    for (const code of HttpErrorCode.options) {
      if (code.endsWith('NotFound')) expect(HTTP_STATUS[code], code).to.equal(404);
      if (code.startsWith('Invalid') || code === 'DigestMismatch' || code === 'BadRequest') expect(HTTP_STATUS[code], code).to.equal(400);
    }
    // a state conflict is 409, a size limit 413, a dependency 502, not ready 503
    expect(
      statuses(['OutputMismatch', 'AlreadyFinished', 'Busy', 'PayloadTooLarge', 'JobQuotaExceeded', 'PreconditionFailed']),
    ).to.deep.equal({
      OutputMismatch: 409,
      AlreadyFinished: 409,
      Busy: 409,
      PayloadTooLarge: 413,
      JobQuotaExceeded: 413,
      PreconditionFailed: 412,
    });
    expect(statuses(['UpstreamUnavailable', 'UnexpectedResponse', 'NotReady', 'Overloaded'])).to.deep.equal({
      UpstreamUnavailable: 502,
      UnexpectedResponse: 502,
      NotReady: 503,
      // codex retries a 503 by itself: an overloaded gateway is a wait, not a failure
      Overloaded: 503,
    });
    // what a request must be before it is read: its length known, its body not compressed
    expect(statuses(['LengthRequired', 'UnsupportedMediaType'])).to.deep.equal({ LengthRequired: 411, UnsupportedMediaType: 415 });
    // every HTTP-only code is an error status
    for (const code of HttpErrorCode.options) expect(HTTP_STATUS[code], code).to.be.within(400, 599);
  });

  it('keeps the job failure reasons and the HTTP-only codes apart', () => {
    const reasons = new Set<string>(FailureReason.options);
    expect(HttpErrorCode.options.filter((c) => reasons.has(c))).to.deep.equal([]);
  });

  it('a job failure keeps its reason; anything else becomes the fallback reason, with the error as its cause', () => {
    const killed = new PagewrightError('Killed', 'stop');
    expect(toJobFailure(killed)).to.equal(killed);
    const refusal = new HttpStatusError(401, 'storage answered 401', 'Unauthorized');
    const failure = toJobFailure(refusal, 'StorageUnavailable');
    expect([failure.code, failure.cause]).to.deep.equal(['StorageUnavailable', refusal]);
    expect(toJobFailure(new Error('boom')).code).to.equal('Internal');
  });
});

describe('clients read the code of an error answer (common/retry.ts)', () => {
  it('takes the code the {error, message} body names', () => {
    const answer = readErrorAnswer(409, JSON.stringify({ error: 'PublishConflict', message: 'site moved' }));
    expect(answer).to.deep.equal({ code: 'PublishConflict', detail: 'PublishConflict: site moved' });
    const err = new HttpStatusError(409, 'x', answer.code);
    expect([err.status, err.code, err.retryable]).to.deep.equal([409, 'PublishConflict', false]);
  });

  it('falls back to the generic code of the status, else UnexpectedResponse', () => {
    expect(readErrorAnswer(502, '<html>bad gateway</html>').code).to.equal(undefined);
    expect(new HttpStatusError(404, 'x', undefined).code).to.equal('NotFound');
    expect(new HttpStatusError(401, 'x', 'SomethingNew').code).to.equal('Unauthorized');
    const proxy = new HttpStatusError(502, 'x');
    expect([proxy.code, proxy.retryable]).to.deep.equal(['UnexpectedResponse', true]);
  });
});

describe('the error middleware (common/error-middleware.ts)', () => {
  let base: string;
  let close: () => Promise<void>;
  const logged: Array<{ level: string; message: string; fields: LogFields | undefined }> = [];
  const logger: Logger = {
    debug: (message, fields) => void logged.push({ level: 'debug', message, fields }),
    info: (message, fields) => void logged.push({ level: 'info', message, fields }),
    warn: (message, fields) => void logged.push({ level: 'warn', message, fields }),
    error: (message, fields) => void logged.push({ level: 'error', message, fields }),
    child: () => logger,
  };

  function routes(app: express.Express): void {
    app.get('/refused', () => {
      throw new PagewrightError('AttemptEnded', 'attempt 1 has ended');
    });
    app.get('/async', async () => {
      await Promise.resolve();
      throw new PagewrightError('JobQuotaExceeded', 'over quota');
    });
    app.post('/json', express.json({ limit: '16b' }), (_req, res) => void res.json({ ok: true }));
    app.get('/bug', () => {
      throw new TypeError('cannot read properties of undefined');
    });
    app.get('/downstream', () => {
      throw new HttpStatusError(401, 'storage answered 401', 'Unauthorized');
    });
    app.get('/late', (_req, res) => {
      res.status(200).setHeader('content-type', 'text/plain');
      res.write('partial');
      throw new PagewrightError('Internal', 'failed mid-answer');
    });
  }

  async function serve(opts: { envelope?: typeof openAiErrorEnvelope; routesHint?: string } = {}): Promise<void> {
    const app = express();
    routes(app);
    installErrorHandling(app, { logger, ...opts });
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    };
  }

  async function call(path: string, init: { method?: 'GET' | 'POST'; body?: string } = {}) {
    const res = await request(base + path, {
      method: init.method ?? 'GET',
      ...(init.body === undefined ? {} : { body: init.body, headers: { 'content-type': 'application/json' } }),
    });
    return { status: res.statusCode, type: String(res.headers['content-type']), body: (await res.body.json()) as unknown };
  }

  beforeEach(() => {
    logged.length = 0;
  });
  afterEach(async () => close());

  it("answers a PagewrightError with its code's status and {error, message}, thrown or rejected", async () => {
    await serve();
    expect(await call('/refused')).to.deep.include({ status: 403, body: { error: 'AttemptEnded', message: 'attempt 1 has ended' } });
    expect(await call('/async')).to.deep.include({ status: 413, body: { error: 'JobQuotaExceeded', message: 'over quota' } });
    expect(logged.filter((l) => l.level === 'error')).to.deep.equal([]);
  });

  it('answers an unknown route 404 NotFound, naming what the service serves', async () => {
    await serve({ routesHint: 'this serves GET /refused' });
    const res = await call('/nope');
    expect(res.status).to.equal(404);
    expect(res.type).to.match(/application\/json/);
    expect(res.body).to.deep.equal({ error: 'NotFound', message: 'no route GET /nope (this serves GET /refused)' });
  });

  it('answers body-parser errors as 400 BadRequest, an oversized body as 413 PayloadTooLarge', async () => {
    await serve();
    expect(await call('/json', { method: 'POST', body: '{nope' })).to.deep.include({
      status: 400,
      body: { error: 'BadRequest', message: 'request body is not valid JSON' },
    });
    const big = await call('/json', { method: 'POST', body: JSON.stringify({ pad: 'x'.repeat(64) }) });
    expect([big.status, (big.body as { error: string }).error]).to.deep.equal([413, 'PayloadTooLarge']);
  });

  it('answers anything else 500 Internal, without its message, and logs it', async () => {
    await serve();
    for (const path of ['/bug', '/downstream']) {
      const res = await call(path);
      expect(res, path).to.deep.include({ status: 500, body: { error: 'Internal', message: 'internal error' } });
    }
    const errors = logged.filter((l) => l.level === 'error');
    expect(errors.map((l) => [l.message, l.fields?.path])).to.deep.equal([
      ['request failed', '/bug'],
      ['request failed', '/downstream'],
    ]);
    expect(String(errors[0]!.fields?.error)).to.contain('cannot read properties of undefined');
  });

  it('sends nothing more once headers went out: the answer is cut off', async () => {
    await serve();
    // headers went out (maybe not yet the partial body): the socket is closed, no JSON error follows
    const err = await request(`${base}/late`)
      .then((res) => res.body.text())
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err, 'the torn answer read as complete').to.be.instanceOf(Error);
    expect(logged.some((l) => l.level === 'error' && l.fields?.path === '/late')).to.equal(true);
  });

  it("answers in the envelope the service passes (the gateway: OpenAI's error shape)", async () => {
    await serve({ envelope: openAiErrorEnvelope });
    expect(await call('/refused')).to.deep.include({
      status: 403,
      body: { error: { message: 'AttemptEnded: attempt 1 has ended', type: 'pagewright_gateway', code: 'AttemptEnded' } },
    });
    expect((await call('/bug')).body).to.deep.equal({
      error: { message: 'Internal: internal error', type: 'pagewright_gateway', code: 'Internal' },
    });
  });
});
