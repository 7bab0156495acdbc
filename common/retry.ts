/**
 * Deadline-aware retries with exponential backoff and jitter, on top of p-retry. A deadline
 * bounds the whole operation: no attempt starts after it, and each attempt's signal fires when
 * it passes, so a hung request cannot outlive the job.
 */
import pRetry from 'p-retry';
import { type ErrorCode, PagewrightError, isErrorCode, parseApiErrorBody } from './errors.js';

export interface RetryOptions {
  /** Extra attempts after the first. */
  retries?: number;
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Epoch ms after which nothing more is tried. */
  deadline?: number;
  signal?: AbortSignal;
  /** Which failures are worth another attempt; default: isTransientError. */
  isRetryable?: (err: unknown) => boolean;
  onRetry?: (info: { error: unknown; attempt: number; delayMs: number }) => void;
}

export interface AttemptContext {
  attempt: number;
  /** Aborts on the caller's signal or at the deadline; pass it to the request. */
  signal: AbortSignal;
}

export async function withRetry<T>(fn: (ctx: AttemptContext) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const isRetryable = opts.isRetryable ?? isTransientError;
  const remaining = () => (opts.deadline === undefined ? Infinity : opts.deadline - Date.now());
  if (remaining() <= 0) throw new DeadlineExceededError();
  return pRetry(
    (attempt) => {
      const left = remaining();
      if (left <= 0) throw new DeadlineExceededError();
      const signals = [opts.signal, Number.isFinite(left) ? AbortSignal.timeout(left) : undefined].filter(
        (s): s is AbortSignal => s !== undefined,
      );
      return fn({ attempt, signal: signals.length === 0 ? new AbortController().signal : AbortSignal.any(signals) });
    },
    {
      retries: opts.retries ?? 5,
      factor: 2,
      minTimeout: opts.minDelayMs ?? 200,
      maxTimeout: opts.maxDelayMs ?? 10_000,
      randomize: true,
      maxRetryTime: remaining(),
      ...(opts.signal ? { signal: opts.signal } : {}),
      shouldRetry: ({ error }) => remaining() > 0 && isRetryable(error),
      onFailedAttempt: ({ error, attemptNumber, retryDelay }) => {
        if (retryDelay > 0) opts.onRetry?.({ error, attempt: attemptNumber, delayMs: retryDelay });
      },
    },
  );
}

/** withRetry's deadline passed before the operation could complete. */
export class DeadlineExceededError extends PagewrightError<'DeadlineExceeded'> {
  constructor() {
    super('DeadlineExceeded', 'deadline exceeded before the operation could complete');
    this.name = 'DeadlineExceededError';
  }
}

/** A code for an answer whose body names none of ours: the generic one of its status, if any. */
const GENERIC_CODES: Readonly<Record<number, ErrorCode>> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  412: 'PreconditionFailed',
  413: 'PayloadTooLarge',
};

/**
 * An HTTP answer that is not the one we wanted (client side); retryable for 408/425/429/5xx.
 * `status` is what the server answered; `code` the one its error body named (so callers switch
 * on it), else the generic code of that status, else UnexpectedResponse. Never answered as is:
 * the error middleware treats one that escapes a route as an internal error.
 */
export class HttpStatusError extends PagewrightError {
  readonly status: number;

  constructor(status: number, message: string, code?: string) {
    super(isErrorCode(code) ? code : (GENERIC_CODES[status] ?? 'UnexpectedResponse'), message);
    this.name = 'HttpStatusError';
    this.status = status;
  }

  get retryable(): boolean {
    return this.status === 408 || this.status === 425 || this.status === 429 || this.status >= 500;
  }
}

/**
 * What a non-2xx answer of a Pagewright service says: the code its `{error, message}` body
 * names (undefined if it names none: a proxy, a crash page) and a detail for error messages.
 */
export function readErrorAnswer(status: number, text: string): { code: string | undefined; detail: string } {
  const body = parseApiErrorBody(text);
  if (body) return { code: body.error, detail: `${body.error}: ${body.message}` };
  return { code: undefined, detail: `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ''}` };
}

const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

/** Network failures, timeouts and retryable HTTP statuses. */
export function isTransientError(err: unknown): boolean {
  if (err instanceof HttpStatusError) return err.retryable;
  if (!(err instanceof Error)) return false;
  if (err.name === 'TimeoutError') return true;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
  return err.cause !== undefined && err.cause !== err && isTransientError(err.cause);
}
