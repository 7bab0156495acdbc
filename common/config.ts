/**
 * Env -> typed config, validated once at start-up. Each field names its variable, so an error
 * says exactly which variable is wrong and why, and all bad variables are reported at once.
 */
import { z } from 'zod';
import { PagewrightError } from './errors.js';

export const ENV_PREFIX = 'PAGEWRIGHT_';

export interface EnvField<S extends z.ZodType> {
  /** Variable name without the PAGEWRIGHT_ prefix. */
  name: string;
  schema: S;
  /** Never echo the value in errors (keys, tokens). */
  secret: boolean;
}

export function env<S extends z.ZodType>(name: string, schema: S, opts: { secret?: boolean } = {}): EnvField<S> {
  return { name, schema, secret: opts.secret ?? false };
}

type ConfigSpec = Record<string, EnvField<z.ZodType>>;
export type ConfigOf<T extends ConfigSpec> = { [K in keyof T]: z.output<T[K]['schema']> };

export class ConfigError extends PagewrightError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super('InvalidConfig', `invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export function loadConfig<T extends ConfigSpec>(spec: T, source: NodeJS.ProcessEnv = process.env): ConfigOf<T> {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, field] of Object.entries(spec)) {
    const variable = ENV_PREFIX + field.name;
    const raw = source[variable];
    // an empty variable means "not set": Kubernetes manifests and shells produce them easily
    const value = raw === undefined || raw === '' ? undefined : raw;
    const parsed = field.schema.safeParse(value);
    if (parsed.success) {
      out[key] = parsed.data;
    } else {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? `${issue.path.join('.')} ` : '';
      const why = value === undefined ? 'is required but not set' : `${where}${issue?.message ?? 'is invalid'}`;
      const shown = value === undefined || field.secret ? '' : ` (got ${JSON.stringify(truncate(value))})`;
      problems.push(`${variable}: ${why}${shown}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as ConfigOf<T>;
}

function truncate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

// Reusable field schemas: env values are strings, so numbers and booleans are coerced.
export const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);
export const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);
export const httpUrl = () => z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).transform((u) => u.replace(/\/+$/, ''));
export const bool = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
    .default(fallback ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1');
/** A comma-separated list of non-empty names. */
export const list = () =>
  z
    .string()
    .transform((s) =>
      s
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.string()).min(1, 'must name at least one'));
export const logLevel = () => z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info');
/** A JSON document validated by `schema`. */
export const json = <S extends z.ZodType>(schema: S) =>
  z
    .string()
    .transform((s, ctx) => {
      try {
        return JSON.parse(s) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'is not valid JSON' });
        return z.NEVER;
      }
    })
    .pipe(schema);
