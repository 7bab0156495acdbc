/**
 * Which test process owns a process of the test control plane (etcd, kube-apiserver, the real
 * node's components, and all their descendants), so that none outlives its owner:
 * - an owner that exits or is interrupted (SIGINT, SIGTERM, SIGHUP) kills them on the way out;
 * - an owner that was SIGKILLed runs nothing on the way out, so the next start reaps them, while
 *   leaving alone the processes of another run going on in parallel (their owner is alive).
 *
 * Ownership travels in an environment variable, like common/process-marker.ts's markers: it is
 * inherited by every descendant, including ones that moved to their own session (a parent-pid
 * check misses those, and with a subreaper such as `systemd --user` orphans are not even
 * re-parented to PID 1). The owner is "pid:starttime" so that a recycled PID does not look alive.
 *
 * Everything here is synchronous on purpose: an 'exit' listener cannot await.
 */
import { readFileSync, readdirSync } from 'node:fs';

export const OWNER_ENV = 'PAGEWRIGHT_TEST_OWNER';
const TERMINATING_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** "pid:starttime" of a live process, or null when it is gone. */
export function ownerId(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the parenthesised command name start at field 3 (state); starttime is field 22
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? null : `${pid}:${fields[19]}`;
  } catch {
    return null;
  }
}

/** This process as an owner: put it in the environment of every process it starts. */
export function selfOwner(): string {
  const id = ownerId(process.pid);
  if (!id) throw new Error('cannot read /proc/self/stat: the test control plane needs Linux /proc');
  return id;
}

export function isOwnerAlive(owner: string): boolean {
  const pid = Number(owner.split(':')[0]);
  return pid > 0 && ownerId(pid) === owner;
}

/** Live processes carrying an owner, with that owner (this process excluded). */
function ownedProcesses(): Array<{ pid: number; owner: string }> {
  const prefix = Buffer.from(`${OWNER_ENV}=`);
  const found: Array<{ pid: number; owner: string }> = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let environ: Buffer;
    try {
      environ = readFileSync(`/proc/${pid}/environ`);
    } catch {
      continue; // exited meanwhile, or another user's
    }
    const at = environ.indexOf(prefix);
    if (at !== 0 && !(at > 0 && environ[at - 1] === 0)) continue;
    const end = environ.indexOf(0, at);
    found.push({ pid, owner: environ.subarray(at + prefix.length, end < 0 ? undefined : end).toString() });
  }
  return found;
}

function kill(pids: number[]): number[] {
  return pids.filter((pid) => {
    try {
      process.kill(pid, 'SIGKILL');
      return true;
    } catch {
      return false; // already gone
    }
  });
}

/** SIGKILLs every process owned by `owner`; returns the PIDs it reached. */
export function killOwnedBy(owner: string): number[] {
  return kill(
    ownedProcesses()
      .filter((p) => p.owner === owner)
      .map((p) => p.pid),
  );
}

/** SIGKILLs every process whose owner is dead (left by a SIGKILLed run); returns their PIDs. */
export function reapOrphans(): number[] {
  const alive = new Map<string, boolean>();
  const orphans = ownedProcesses().filter(({ owner }) => {
    if (!alive.has(owner)) alive.set(owner, isOwnerAlive(owner));
    return !alive.get(owner);
  });
  return kill(orphans.map((p) => p.pid));
}

/**
 * Runs `cleanup` (synchronous) when this process exits or receives SIGINT/SIGTERM/SIGHUP, then
 * lets the signal end the process as it would have without us. Returns the unregister function.
 */
export function onTermination(cleanup: () => void): () => void {
  let ran = false;
  const run = () => {
    if (ran) return;
    ran = true;
    try {
      cleanup();
    } catch {
      // best effort: the process is going away
    }
  };
  const onSignal = (signal: NodeJS.Signals) => {
    run();
    unregister();
    // listening replaced the default action (terminate): restore it once nobody else listens
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const unregister = () => {
    process.removeListener('exit', run);
    for (const s of TERMINATING_SIGNALS) process.removeListener(s, onSignal);
  };
  process.on('exit', run);
  for (const s of TERMINATING_SIGNALS) process.on(s, onSignal);
  return unregister;
}
