/**
 * The one place that turns errors into HTTP responses, for every Pagewright HTTP app (storage,
 * manager, the runner and its agent server, the gateway; fastify's and undici's pattern,
 * notes/style.md). Routes throw (or reject with) a PagewrightError; this answers with the
 * status common/errors.ts's table gives its code and the service's envelope:
 *   - `{error: code, message}` (storage, manager, runner, agent server; clients parse it with
 *     common/retry.ts's readErrorAnswer);
 *   - the gateway passes OpenAI's `{error: {message, type, code}}` as its `envelope`, because codex
 *     and the openai SDK read that shape.
 * Express's own 4xx errors (body-parser's, the router's) become 400 BadRequest (413
 * PayloadTooLarge for a body over the limit); anything else, a downstream service's answer included (an HttpStatusError is what
 * another service said, not this one's answer), is 500 Internal with a log line. Once headers
 * went out nothing more is sent: the response is destroyed, so the client sees a torn answer.
 */
import type { ErrorRequestHandler, Express, Request, RequestHandler } from 'express';
import { PagewrightError, httpStatusOf } from './errors.js';
import type { Logger } from './logger.js';
import { HttpStatusError } from './retry.js';

/** The JSON body of an error answer. */
export type ErrorEnvelope = (err: PagewrightError) => unknown;

/** storage, manager, runner and the agent server: `{error: code, message}`. */
const apiErrorEnvelope: ErrorEnvelope = (err) => ({ error: err.code, message: err.message });

export interface ErrorHandlingOptions {
  logger: Logger;
  /** Default: apiErrorEnvelope. */
  envelope?: ErrorEnvelope;
  /** Said in parentheses after a 404's "no route METHOD /path" (what the service does serve). */
  routesHint?: string;
  /** Told every error's code as it is answered (metrics). */
  onError?: (code: string) => void;
  /**
   * A refused request whose declared body is at most this long is read to its end and dropped,
   * and the connection kept; a longer one (or one of unknown length) is answered with
   * `Connection: close`. Default 0: always close. Closing a socket with unread bytes resets it,
   * and a reset can reach the client before it read our answer (Linux then drops the answer):
   * it sees EPIPE or ECONNRESET, not the status and Retry-After we sent. Reading a body the
   * service would have taken anyway costs no memory, so a service sets its own body limit here.
   */
  readRefusedBodiesUpTo?: number;
}

/** Installs the 404 for unknown routes and the error middleware; call it after the last route. */
export function installErrorHandling(app: Express, opts: ErrorHandlingOptions): void {
  app.use(routeNotFound(opts.routesHint));
  app.use(errorMiddleware(opts));
}

function routeNotFound(hint?: string): RequestHandler {
  return (req: Request) => {
    throw new PagewrightError('NotFound', `no route ${req.method} ${req.path}${hint ? ` (${hint})` : ''}`);
  };
}

function errorMiddleware(opts: ErrorHandlingOptions): ErrorRequestHandler {
  const envelope = opts.envelope ?? apiErrorEnvelope;
  return (err, req, res, _next) => {
    const { error, expected } = toAnswer(err);
    opts.onError?.(error.code);
    const status = httpStatusOf(error.code);
    const where = { method: req.method, path: req.path, code: error.code };
    if (!expected || status === 500) opts.logger.error('request failed', { ...where, error: String(err) });
    else if (status >= 500) opts.logger.warn('request failed', { ...where, error: error.message });
    else opts.logger.debug('request rejected', where);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (!req.complete) {
      // the client may still be sending a body we refused: read it (bounded) so it can read our answer, or close
      const declared = Number(req.headers['content-length']);
      if (Number.isSafeInteger(declared) && declared <= (opts.readRefusedBodiesUpTo ?? 0)) req.resume();
      else res.setHeader('Connection', 'close');
    }
    res.status(status).json(envelope(error));
  };
}

/**
 * The error to answer with; `expected` is false for anything that is not one of ours (a bug, a
 * downstream service's refusal nobody classified), answered as 500 Internal.
 */
function toAnswer(err: unknown): { error: PagewrightError; expected: boolean } {
  if (err instanceof PagewrightError && !(err instanceof HttpStatusError)) return { error: err, expected: true };
  // body-parser's errors (http-errors) carry a 4xx status and a type; express's router, a 400 for a param it cannot decode
  const e = err as { type?: unknown; status?: unknown; message?: unknown } | null;
  if (!(err instanceof HttpStatusError) && typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
    if (e.type === 'entity.too.large')
      return { error: new PagewrightError('PayloadTooLarge', 'request body is too large'), expected: true };
    if (e.type === 'entity.parse.failed')
      return { error: new PagewrightError('BadRequest', 'request body is not valid JSON'), expected: true };
    return { error: new PagewrightError('BadRequest', typeof e.message === 'string' ? e.message : 'bad request'), expected: true };
  }
  return { error: new PagewrightError('Internal', 'internal error', { cause: err }), expected: false };
}
