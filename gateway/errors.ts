/**
 * The gateway's refusals: a subset of Pagewright's one vocabulary (common/errors.ts, which also
 * holds each code's HTTP status: 403 for what a retry cannot fix, since codex retries 429 and 5xx
 * by itself and a spent budget must not look like a rate limit), answered in the OpenAI error
 * shape (`{error: {message, type, code}}`) because codex and the openai SDK read that shape.
 */
import { type CodeSubset, PagewrightError } from '../common/errors.js';
import type { ErrorEnvelope } from '../common/error-middleware.js';

export type GatewayErrorCode = CodeSubset<
  | 'TokenMissing'
  | 'TokenInvalid'
  | 'TokenExpired'
  | 'AttemptEnded'
  | 'LLMBudgetExceeded'
  | 'LLMRateLimited'
  | 'ModelNotAllowed'
  | 'HostedToolNotAllowed'
  | 'InputNotAllowed'
  | 'RequestNotAllowed'
  | 'BadRequest'
  | 'PayloadTooLarge'
  | 'LengthRequired'
  | 'UnsupportedMediaType'
  | 'NotFound'
  | 'NotReady'
  | 'Overloaded'
  | 'UpstreamUnavailable'
>;

export class GatewayError extends PagewrightError<GatewayErrorCode> {
  constructor(code: GatewayErrorCode, message: string) {
    super(code, message);
    this.name = 'GatewayError';
  }
}

/** The gateway's envelope for common/error-middleware.ts: OpenAI's error shape. */
export const openAiErrorEnvelope: ErrorEnvelope = (err) => ({
  error: { message: `${err.code}: ${err.message}`, type: 'pagewright_gateway', code: err.code },
});
