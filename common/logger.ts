/**
 * A small Logger interface injected everywhere (no global logger), backed by winston's JSON
 * format. Child loggers carry fields such as job_id so every line of a job can be found.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import winston from 'winston';
import TransportStream from 'winston-transport';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

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

const MESSAGE = Symbol.for('message');

/**
 * Appends every formatted line to a file synchronously: the runner uploads its job log right
 * after the job ends, and an async file transport could still hold the last lines in memory.
 */
export class SyncFileTransport extends TransportStream {
  readonly #fd: number;

  constructor(path: string, opts: TransportStream.TransportStreamOptions = {}) {
    super(opts);
    this.#fd = openSync(path, 'a', 0o640);
  }

  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    writeSync(this.#fd, `${String(info[MESSAGE])}\n`);
    next();
  }

  override close(): void {
    closeSync(this.#fd);
  }
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
