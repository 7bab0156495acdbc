/**
 * Mocha root hooks: stop the shared control plane and the shared real node once, after every suite
 * ran; then make sure the run ends.
 *
 * Mocha runs without --exit so a leak shows, but a leaked handle (a socket, a server, a child
 * process) or a teardown step that never returns then keeps the process alive after the summary,
 * silently, until CI's limit kills it (a run once sat an hour after "776 passing", with nothing
 * to say why). So the teardown says each step it takes, a deadline bounds the whole teardown,
 * and once it is done an unref'd timer waits a little: if the process is still alive when either
 * fires, it prints the step it was in and what is still open (each handle with its address, pid or
 * command), kills the leaked child processes and exits non-zero. A leak fails the run in seconds,
 * with its name, never as a timeout.
 */
import type { ChildProcess } from 'node:child_process';
import { Server, Socket } from 'node:net';
import { stopSharedControlPlane } from './control-plane.js';
import { stopSharedRealNode } from './node/shared.js';

const LEAK_GRACE_MS = 20_000;
// the node's stop kills a few dozen processes and takes its network down: seconds, not minutes
const TEARDOWN_DEADLINE_MS = 5 * 60_000;

export async function mochaGlobalTeardown(): Promise<void> {
  const started = Date.now();
  let step = 'stopping the shared control plane';
  const deadline = setTimeout(
    () => reportLeaks(`the teardown is still ${step} after ${TEARDOWN_DEADLINE_MS / 1000} s`),
    TEARDOWN_DEADLINE_MS,
  );
  deadline.unref();
  await stopSharedControlPlane();
  step = 'stopping the shared real node';
  await stopSharedRealNode();
  clearTimeout(deadline);
  process.stderr.write(`test run: teardown done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  setTimeout(() => reportLeaks(`still alive ${LEAK_GRACE_MS / 1000} s after the teardown`), LEAK_GRACE_MS).unref();
}

function reportLeaks(why: string): void {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  const lines = handles.map(describe).filter((l): l is string => l !== null);
  process.stderr.write(
    `\ntest run: ${why}; open:\n  resources: ${process.getActiveResourcesInfo().join(', ')}\n${lines.map((l) => `  ${l}\n`).join('')}`,
  );
  for (const h of handles) if (isChild(h) && h.exitCode === null) h.kill('SIGKILL');
  // mocha (without --exit) sets the exit code from its result in an 'exit' listener: a later one wins
  process.on('exit', () => {
    process.exitCode = 1;
  });
  process.exit(1);
}

function isChild(h: unknown): h is ChildProcess {
  return typeof h === 'object' && h !== null && 'spawnfile' in h && 'pid' in h;
}

function describe(h: unknown): string | null {
  // the watchdog's own stdio streams are not leaks
  if (h === process.stdout || h === process.stderr || h === process.stdin) return null;
  if (isChild(h)) return `child process ${h.pid}: ${h.spawnargs.join(' ').slice(0, 300)}`;
  if (h instanceof Server) return `server listening on ${JSON.stringify(h.address())}`;
  if (h instanceof Socket) {
    if (h.remotePort !== undefined) return `socket ${h.localAddress}:${h.localPort} -> ${h.remoteAddress}:${h.remotePort}`;
    return `socket (pipe or unix) ${(h as unknown as { _pendingData?: unknown; path?: string }).path ?? ''}`.trim();
  }
  return (h as object | null)?.constructor?.name ?? String(h);
}
