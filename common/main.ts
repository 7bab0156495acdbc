/**
 * Process wiring shared by the services' main.ts: a config error is one clear line on stderr
 * and exit code 2; SIGTERM/SIGINT run the service's shutdown once, then exit with the code it
 * returns (0 by default).
 */
import { ConfigError } from './config.js';

// biome-ignore lint/suspicious/noConfusingVoidType: a service's shutdown may return nothing (exit 0) or its exit code
export async function runMain(service: string, start: () => Promise<() => Promise<number | void>>): Promise<void> {
  // biome-ignore lint/suspicious/noConfusingVoidType: as above
  let shutdown: () => Promise<number | void>;
  try {
    shutdown = await start();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${service}: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`${service}: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    shutdown().then(
      (code) => process.exit(code ?? 0),
      (err: unknown) => {
        process.stderr.write(`${service}: shutdown after ${signal} failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
