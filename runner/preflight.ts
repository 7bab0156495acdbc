/**
 * Before touching storage, ask the model endpoint (with the openai SDK) for the configured
 * model: a wrong key, a dead endpoint or an unknown model fails the job in seconds with a
 * precise reason instead of after a download and a codex start-up.
 *
 * It retrieves the model (GET /models/{id}). Some OpenAI-compatible endpoints only list their
 * models (GET /models) and answer the retrieve route 404 or 405 although they serve the model;
 * for those the model is looked up in the list instead, and a model the list lacks fails with
 * ModelNotFound naming what the endpoint offers. An endpoint that answers neither route has no
 * model of that name as far as the preflight can tell: ModelNotFound too.
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

/** How many of the offered models a ModelNotFound message names. */
const OFFERED_MODELS_SHOWN = 5;

export async function preflightModel(opts: PreflightOptions): Promise<void> {
  const client = new OpenAI({
    baseURL: opts.baseURL,
    apiKey: opts.apiKey,
    timeout: opts.timeoutMs ?? 15_000,
    maxRetries: opts.maxRetries ?? 2,
  });
  const request = opts.signal ? { signal: opts.signal } : undefined;
  let retrieveStatus: number;
  try {
    await client.models.retrieve(opts.model, request);
    return;
  } catch (err) {
    if (!routeMissing(err)) throw classifyModelError(err, opts);
    retrieveStatus = err.status;
  }
  // a list-only endpoint: the model must be in its list
  const where = `model endpoint ${opts.baseURL}`;
  let offered: string[];
  try {
    const page = await client.models.list(request);
    offered = (page.data ?? []).map((m) => m?.id).filter((id): id is string => typeof id === 'string');
  } catch (err) {
    if (routeMissing(err)) {
      const tried = `GET /models/${opts.model} answered HTTP ${retrieveStatus}, GET /models HTTP ${err.status}`;
      throw new PagewrightError('ModelNotFound', `${where} does not serve model ${opts.model} (${tried})`, { cause: err });
    }
    throw classifyModelError(err, opts);
  }
  if (!offered.includes(opts.model)) {
    throw new PagewrightError('ModelNotFound', `${where} does not serve model ${opts.model}; ${describeOffered(offered)}`);
  }
}

/** "it offers a, b, c, d, e and 3 more" (the first OFFERED_MODELS_SHOWN, then the count). */
function describeOffered(ids: readonly string[]): string {
  if (ids.length === 0) return 'it lists no models';
  const shown = ids.slice(0, OFFERED_MODELS_SHOWN).join(', ');
  const more = ids.length - OFFERED_MODELS_SHOWN;
  return more > 0 ? `it offers ${shown} and ${more} more` : `it offers ${shown}`;
}

/** The endpoint has no such route (404) or does not allow GET on it (405). */
function routeMissing(err: unknown): err is InstanceType<typeof OpenAI.APIError> & { status: 404 | 405 } {
  return err instanceof OpenAI.APIError && (err.status === 404 || err.status === 405);
}

function classifyModelError(err: unknown, opts: { baseURL: string; model: string }): PagewrightError {
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
    return new PagewrightError(
      'LLMUnavailable',
      `${where} is unreachable: ${err.cause instanceof Error ? err.cause.message : err.message}`,
      { cause: err },
    );
  }
  if (err instanceof OpenAI.APIError) {
    return new PagewrightError('LLMUnavailable', `${where} answered HTTP ${err.status ?? '?'}: ${err.message}`, { cause: err });
  }
  if (err instanceof Error && err.name === 'AbortError') {
    return new PagewrightError('Killed', 'preflight aborted', { cause: err });
  }
  return new PagewrightError('LLMUnavailable', `${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
