/**
 * How many forks the kernel refused in this process's own cgroup because a pids limit was hit:
 * the agent server reads it to tell a run that hit the pod's pids limit (a fork bomb, or a job
 * that needs more than podPidsLimit) from one that failed for another reason.
 *
 * The count is the kernel's, in a file the container cannot write. Verified on this machine's
 * kernel (6.18, cgroup v1): a parent cgroup with pids.max 20 and a child without a limit, 40
 * forks in the child: the child's pids.events read "max 14", the parent's "max 0". A container
 * sees its own cgroup as /sys/fs/cgroup/pids (runc's bind mount), and the kubelet's podPidsLimit
 * is the pod cgroup's pids.max, above it: so the refusals show in the container that forked.
 * Under cgroup v2, Linux 6.10+ keeps that local count in pids.events.local (pids.events there is
 * hierarchical: limits hit at this level or below); older kernels kept it in pids.events.
 */
import { readFile } from 'node:fs/promises';

const CANDIDATES = ['/sys/fs/cgroup/pids/pids.events', '/sys/fs/cgroup/pids.events.local', '/sys/fs/cgroup/pids.events'];

/** The `max` count of the first pids.events file that reads; null where there is none (no pids controller, not Linux). */
export async function forkRefusals(files: readonly string[] = CANDIDATES): Promise<number | null> {
  for (const file of files) {
    const text = await readFile(file, 'utf8').catch(() => null);
    const max = text === null ? undefined : /^max (\d+)$/m.exec(text)?.[1];
    if (max !== undefined) return Number(max);
  }
  return null;
}
