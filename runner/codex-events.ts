/**
 * Codex CLI `--json` events (0.169.0) and how a failed run is classified. Codex exits 0 even
 * when tools failed, so exit status alone proves little; turn.failed/error messages say why a
 * turn ended and are mapped to job failure reasons here.
 */
import type { FailureReason } from '../common/errors.js';

export interface CodexEvent {
  type: string;
  [key: string]: unknown;
}

export function parseEventLine(line: string): CodexEvent | null {
  const trimmed = line.trim();
  if (!trimmed.startsWith('{')) return null;
  try {
    const value = JSON.parse(trimmed) as unknown;
    if (value && typeof value === 'object' && typeof (value as { type?: unknown }).type === 'string') return value as CodexEvent;
  } catch {
    // codex prints the odd non-JSON line; it is logged raw
  }
  return null;
}

/** The error text of an `error` or `turn.failed` event, else null. */
export function eventError(event: CodexEvent): string | null {
  if (event.type === 'error' && typeof event.message === 'string') return event.message;
  if (event.type === 'turn.failed') {
    const err = event.error as { message?: unknown } | undefined;
    return typeof err?.message === 'string' ? err.message : 'turn failed';
  }
  return null;
}

/** The last agent message text from an `item.completed` event, else null. */
export function agentMessage(event: CodexEvent): string | null {
  if (event.type !== 'item.completed') return null;
  const item = event.item as { type?: unknown; text?: unknown } | undefined;
  return item?.type === 'agent_message' && typeof item.text === 'string' ? item.text : null;
}

const AUTH = /\b401\b|\b403\b|unauthorized|forbidden|invalid[_ ]api[_ ]key|incorrect api key/i;
const UNAVAILABLE =
  /connection failed|error sending request|high demand|exceeded retry limit|\b429\b|\b5\d\d\b|too many requests|stream disconnected|timed? ?out|service unavailable|overloaded/i;

/** Reason for a codex run that ended with errors. Progress lines ("Reconnecting... 1/2") are skipped by the caller. */
export function classifyCodexFailure(messages: string[]): { reason: FailureReason; message: string } {
  const relevant = messages.filter((m) => !/^Reconnecting\.\.\./.test(m));
  const last = relevant.at(-1) ?? messages.at(-1) ?? 'codex failed without an error message';
  if (relevant.some((m) => AUTH.test(m))) return { reason: 'LLMAuthFailed', message: `model endpoint rejected the key: ${last}` };
  if (relevant.some((m) => UNAVAILABLE.test(m))) return { reason: 'LLMUnavailable', message: `model endpoint unavailable: ${last}` };
  return { reason: 'CodexFailed', message: last };
}

/** JSON schema for the final message (passed as --output-schema; codex does not enforce it). */
export const FINAL_MESSAGE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['summary', 'files_changed'],
  properties: {
    summary: { type: 'string', description: 'One or two sentences for the site owner: what changed and why.' },
    files_changed: { type: 'array', items: { type: 'string' }, description: 'Paths of the files you changed, relative to the site root.' },
  },
} as const;
