/**
 * The gateway's refusals, each with a stable code, answered in the OpenAI error shape
 * (`{error: {message, type, code}}`) because codex and the openai SDK read that shape. 403 for
 * what a retry cannot fix (codex retries 429 and 5xx by itself: a spent budget must not look
 * like a rate limit).
 */
export type GatewayErrorCode =
  | 'TokenMissing'
  | 'TokenInvalid'
  | 'TokenExpired'
  | 'AttemptEnded'
  | 'LLMBudgetExceeded'
  | 'LLMRateLimited'
  | 'ModelNotAllowed'
  | 'BadRequest'
  | 'PayloadTooLarge'
  | 'NotFound'
  | 'NotReady'
  | 'UpstreamUnavailable';

const STATUS: Record<GatewayErrorCode, number> = {
  TokenMissing: 401,
  TokenInvalid: 401,
  TokenExpired: 401,
  AttemptEnded: 403,
  LLMBudgetExceeded: 403,
  LLMRateLimited: 403,
  ModelNotAllowed: 403,
  BadRequest: 400,
  PayloadTooLarge: 413,
  NotFound: 404,
  NotReady: 503,
  UpstreamUnavailable: 502,
};

export class GatewayError extends Error {
  constructor(
    readonly code: GatewayErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'GatewayError';
  }

  get status(): number {
    return STATUS[this.code];
  }

  body(): { error: { message: string; type: string; code: string } } {
    return { error: { message: `${this.code}: ${this.message}`, type: 'pagewright_gateway', code: this.code } };
  }
}
