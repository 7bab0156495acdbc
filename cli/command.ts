/**
 * What every cluster command of the CLI shares, as kubectl and git behave (notes/style.md):
 *   - `-n/--namespace`, `--kubeconfig`, `--context` and `-h/--help` on every verb;
 *   - exit 0 on success, 1 on a failure with one line `error: ...` on stderr, 2 on a usage
 *     error (with a pointer to the verb's --help);
 *   - a Kubernetes Status from the apiserver or the review API is shown as its message.
 * Pure: argument parsing and the error vocabulary, tested without a network
 * (test/unit/cli-logic.test.ts).
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** A failure of the command (exit 1): its message is the one line shown. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

/** The command was called wrongly (exit 2). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

type Options = NonNullable<ParseArgsConfig['options']>;

const COMMON: Options = {
  namespace: { type: 'string', short: 'n' },
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

export interface Parsed {
  /** The flags, by long name. */
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
  /** The cluster flags every verb takes. */
  kube: { namespace?: string; kubeconfig?: string; context?: string };
  help: boolean;
}

/**
 * The verb's arguments: its own `options` and the common ones; `positionals` bounds how many
 * operands it takes (checked unless --help was asked for).
 */
export function parseCommand(argv: string[], options: Options, positionals: { min: number; max: number; names: string }): Parsed {
  let parsed: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options: { ...COMMON, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  const values: Parsed['values'] = {};
  for (const [k, v] of Object.entries(parsed.values)) values[k] = Array.isArray(v) ? v.at(-1) : v;
  const help = values.help === true;
  if (!help) {
    const n = parsed.positionals.length;
    if (n < positionals.min) throw new UsageError(`expected ${positionals.names}`);
    if (n > positionals.max) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[positionals.max])}`);
    for (const flag of ['namespace', 'kubeconfig', 'context'] as const)
      if (values[flag] === '') throw new UsageError(`--${flag} must not be empty`);
  }
  const kube: Parsed['kube'] = {};
  for (const flag of ['namespace', 'kubeconfig', 'context'] as const) {
    const v = values[flag];
    if (typeof v === 'string') kube[flag] = v;
  }
  return { values, positionals: parsed.positionals, kube, help };
}

/** `-o json` or the default table; anything else is a usage error. */
export function outputFormat(value: string | boolean | undefined): 'table' | 'json' {
  if (value === undefined) return 'table';
  if (value === 'json') return 'json';
  throw new UsageError(`unsupported output format ${JSON.stringify(value)} (supported: json)`);
}

/** A duration flag in seconds (`120`, `120s`, `2m`), as a number of milliseconds. */
export function durationMs(flag: string, value: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(value);
  if (!m) throw new UsageError(`--${flag} must be a duration like 90s, 5m or 1h, got ${JSON.stringify(value)}`);
  const unit = m[2] === 'h' ? 3_600_000 : m[2] === 'm' ? 60_000 : 1000;
  return Number(m[1]) * unit;
}

/**
 * The one line a failure is shown as: a Kubernetes Status body's message (the apiserver's
 * Forbidden, the review API's `UnsafeArchive: ...`), else the body's first line, else the
 * HTTP status.
 */
export function statusMessage(httpStatus: number, body: string): string {
  try {
    const parsed = JSON.parse(body) as { kind?: unknown; message?: unknown; reason?: unknown };
    if (typeof parsed.message === 'string' && parsed.message) return oneLine(parsed.message);
    if (typeof parsed.reason === 'string' && parsed.reason) return `${parsed.reason} (HTTP ${httpStatus})`;
  } catch {
    // not JSON
  }
  const first = body.trim().split('\n')[0]?.trim();
  return first ? `${oneLine(first).slice(0, 300)} (HTTP ${httpStatus})` : `the server answered HTTP ${httpStatus}`;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
