/**
 * Before touching storage, ask the model endpoint (with the openai SDK) for the configured
 * model: a wrong key, a dead endpoint or an unknown model fails the job in seconds with a
 * precise reason instead of after a download and a codex start-up.
 */
import OpenAI from 'openai';
import { PagewrightError } from '../common/errors.js';

export interface PreflightOptions {
  baseURL: string;
  apiKey: string;
  model: string;
  timeoutMs?: number;
  maxRetries?: number;
  signal?: AbortSignal;
}

export async function preflightModel(opts: PreflightOptions): Promise<void> {
  const client = new OpenAI({
    baseURL: opts.baseURL,
    apiKey: opts.apiKey,
    timeout: opts.timeoutMs ?? 15_000,
    maxRetries: opts.maxRetries ?? 2,
  });
  try {
    await client.models.retrieve(opts.model, opts.signal ? { signal: opts.signal } : undefined);
  } catch (err) {
    throw classifyModelError(err, opts);
  }
}

export function classifyModelError(err: unknown, opts: { baseURL: string; model: string }): PagewrightError {
  const where = `model endpoint ${opts.baseURL}`;
  if (err instanceof OpenAI.AuthenticationError || err instanceof OpenAI.PermissionDeniedError) {
    return new PagewrightError('LLMAuthFailed', `${where} rejected the API key (HTTP ${err.status})`, { cause: err });
  }
  if (err instanceof OpenAI.NotFoundError) {
    return new PagewrightError('ModelNotFound', `${where} does not serve model ${opts.model}`, { cause: err });
  }
  if (err instanceof OpenAI.APIConnectionTimeoutError) {
    return new PagewrightError('LLMUnavailable', `${where} did not answer in time`, { cause: err });
  }
  if (err instanceof OpenAI.APIConnectionError) {
    return new PagewrightError('LLMUnavailable', `${where} is unreachable: ${err.cause instanceof Error ? err.cause.message : err.message}`, { cause: err });
  }
  if (err instanceof OpenAI.APIError) {
    return new PagewrightError('LLMUnavailable', `${where} answered HTTP ${err.status ?? '?'}: ${err.message}`, { cause: err });
  }
  if (err instanceof Error && err.name === 'AbortError') {
    return new PagewrightError('Killed', 'preflight aborted', { cause: err });
  }
  return new PagewrightError('LLMUnavailable', `${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
