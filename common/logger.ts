/**
 * A small Logger interface injected everywhere (no global logger), backed by winston's JSON
 * format. Child loggers carry fields such as job_id so every line of a job can be found.
 */
import winston from 'winston';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

export interface LoggerOptions {
  level?: LogLevel;
  service: string;
  /** Extra winston transports (e.g. the runner's job log file). Defaults to stderr only. */
  transports?: winston.transport[];
  fields?: LogFields;
}

export function createLogger(opts: LoggerOptions): Logger {
  const level = opts.level ?? 'info';
  const base = winston.createLogger({
    level: level === 'silent' ? 'error' : level,
    silent: level === 'silent',
    defaultMeta: { service: opts.service, ...opts.fields },
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    // stderr keeps stdout free for program output (the CLI prints results there)
    transports: opts.transports ?? [new winston.transports.Console({ stderrLevels: ['debug', 'info', 'warn', 'error'] })],
  });
  return wrap(base);
}

function wrap(w: winston.Logger): Logger {
  return {
    debug: (message, fields) => void w.debug(message, fields),
    info: (message, fields) => void w.info(message, fields),
    warn: (message, fields) => void w.warn(message, fields),
    error: (message, fields) => void w.error(message, fields),
    child: (fields) => wrap(w.child(fields)),
  };
}

/** A logger that drops everything: for unit tests and library callers that pass none. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
