/**
 * Finds and kills every process that carries a marker environment variable.
 *
 * Why not a process-group or parent-pid walk: with its sandbox bypassed, the Codex CLI runs each
 * command in a new session, and when codex dies those commands are re-parented to PID 1. Both
 * a group kill and a ppid tree miss them. Environment variables are inherited by every
 * descendant, whatever session it moves to, so a unique marker set on the root process finds
 * them all (a process that scrubs its own environment escapes, which codex's commands do not).
 */
import { readdir, readFile } from 'node:fs/promises';

export const PROCESS_MARKER_ENV = 'PAGEWRIGHT_PROCESS_MARKER';

/** The marker of one run of the agent: the job, the attempt and the runner process that started it. */
export function runMarker(jobId: string, attempt: number, runnerPid: number): string {
  return `${jobId}.${attempt}.${runnerPid}`;
}

/** PIDs (excluding this process) whose environment holds `name=value`. */
export async function findMarkedProcesses(value: string, name = PROCESS_MARKER_ENV): Promise<number[]> {
  const needle = Buffer.from(`${name}=${value}\0`);
  const entries = await readdir('/proc');
  const pids: number[] = [];
  await Promise.all(
    entries.map(async (entry) => {
      const pid = Number(entry);
      if (!Number.isInteger(pid) || pid === process.pid) return;
      let environ: Buffer;
      try {
        environ = await readFile(`/proc/${pid}/environ`);
      } catch {
        return; // gone, or not ours to read
      }
      // environ is NUL-separated; match at the start or right after a NUL so FOO_X=... can't match X=...
      const at = environ.indexOf(needle);
      if (at === 0 || (at > 0 && environ[at - 1] === 0)) pids.push(pid);
    }),
  );
  return pids.sort((a, b) => a - b);
}

/** Sends `signal` to every marked process; returns the PIDs it reached. */
async function signalMarkedProcesses(value: string, signal: NodeJS.Signals, name = PROCESS_MARKER_ENV): Promise<number[]> {
  const pids = await findMarkedProcesses(value, name);
  const reached: number[] = [];
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
      reached.push(pid);
    } catch {
      // already exited
    }
  }
  return reached;
}

/**
 * SIGKILLs marked processes until none is left (a dying parent may fork once more), or the
 * timeout passes. Returns the PIDs still alive at the end (empty on success).
 */
export async function killMarkedProcesses(value: string, opts: { name?: string; timeoutMs?: number } = {}): Promise<number[]> {
  const name = opts.name ?? PROCESS_MARKER_ENV;
  const deadline = Date.now() + (opts.timeoutMs ?? 5000);
  for (;;) {
    await signalMarkedProcesses(value, 'SIGKILL', name);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // zombies keep their environ readable until reaped; only count processes that still run
    const alive = await livePids(await findMarkedProcesses(value, name));
    if (alive.length === 0 || Date.now() >= deadline) return alive;
  }
}

async function livePids(pids: number[]): Promise<number[]> {
  const alive: number[] = [];
  for (const pid of pids) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      // state is the field after the parenthesised command name
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state !== 'Z' && state !== 'X') alive.push(pid);
    } catch {
      // gone
    }
  }
  return alive;
}
