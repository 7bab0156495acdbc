/**
 * The agent's final message -> summary. Codex does not enforce --output-schema, so the JSON is
 * validated here; the legacy `FILES_CHANGED: N` / `SUMMARY: ...` lines and plain prose are
 * also accepted. The files the agent claims are only compared with the real diff, never trusted.
 */
import { PagewrightError } from '../common/errors.js';
import { AgentFinalMessage } from '../common/schemas.js';

const MAX_SUMMARY_CHARS = 4000;

export interface ParsedFinalMessage {
  summary: string;
  /** Paths (JSON form) or a count (legacy form) the agent claims; null when it said nothing. */
  claimedFiles: string[] | number | null;
  format: 'json' | 'legacy' | 'text';
}

export function parseFinalMessage(text: string | null | undefined): ParsedFinalMessage {
  const trimmed = (text ?? '').trim();
  if (trimmed === '') {
    throw new PagewrightError('InvalidAgentOutput', 'the agent ended without a final message');
  }
  const json = parseJson(trimmed);
  if (json !== undefined) {
    const parsed = AgentFinalMessage.safeParse(json);
    if (parsed.success) {
      return { summary: clip(parsed.data.summary.trim()), claimedFiles: parsed.data.files_changed, format: 'json' };
    }
  }
  const legacy = parseLegacy(trimmed);
  if (legacy) return legacy;
  return { summary: clip(trimmed), claimedFiles: null, format: 'text' };
}

function parseJson(text: string): unknown {
  // models like to wrap JSON in a fenced block
  const fenced = /^```(?:json)?\s*\n([\s\S]*?)\n```$/.exec(text);
  const body = fenced?.[1] ?? text;
  if (!body.startsWith('{')) return undefined;
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

function parseLegacy(text: string): ParsedFinalMessage | null {
  const lines = text.split(/\r?\n/);
  let count: number | null = null;
  let summary: string[] | null = null;
  for (const line of lines) {
    const files = /^\s*FILES_CHANGED:\s*(\d+)\s*$/i.exec(line);
    const sum = /^\s*SUMMARY:\s*(.*)$/i.exec(line);
    if (files?.[1]) {
      count = Number(files[1]);
      if (summary) break;
    } else if (sum) {
      summary = [sum[1] ?? ''];
    } else if (summary) {
      summary.push(line);
    }
  }
  if (count === null && summary === null) return null;
  const text2 = (summary ?? []).join('\n').trim();
  return { summary: clip(text2 || '(no summary given)'), claimedFiles: count, format: 'legacy' };
}

function clip(s: string): string {
  return s.length > MAX_SUMMARY_CHARS ? `${s.slice(0, MAX_SUMMARY_CHARS - 1)}…` : s;
}
