/**
 * Did a run end because it hit one of the pod's limits? The runner asks this after every run of
 * the agent, once the agent and all it started are stopped (runner/codex.ts), and before it
 * judges codex's own exit: a process that could not fork, or a tool that met ENOSPC, makes codex
 * fail in ways that say little of why (measured: with the work dir full, codex exited 1 with
 * "Failed to write last message file ... No space left on device", which alone would read as
 * CodexFailed; a run stopped for the pids limit is killed), so the limit is the job's reason.
 *   - PidsLimitExceeded: the agent server saw the kernel refuse forks in the agent's container
 *     (agent-server.ts, cgroup-pids.ts) and stopped the run;
 *   - WorkDirFull: the work directory has no free block left: a write past its size failed
 *     (the runner reads this itself, statfs of the volume it shares with the agent).
 * A run stopped for another reason first (a kill, the deadline) keeps that reason.
 */
import { statfs } from 'node:fs/promises';
import { type JobFailure, PagewrightError } from '../common/errors.js';
import type { AgentExit } from './agent-launcher.js';

/**
 * Less free than this is a full work dir. Absolute, not a share of the size: outside a pod
 * (`pagewright run`) the work dir is on the machine's own disk, where 1% free can be gigabytes.
 */
const FULL_SLACK_BYTES = 4 * 2 ** 20;

export async function limitFailure(exit: AgentExit, workDir: string): Promise<JobFailure | null> {
  if (exit.forkRefusals) {
    return new PagewrightError(
      'PidsLimitExceeded',
      `the agent's processes hit the pod's pids limit (the kubelet's podPidsLimit): the kernel refused ${exit.forkRefusals} fork(s), and the run was stopped`,
    );
  }
  const fs = await statfs(workDir).catch(() => null);
  if (!fs || fs.blocks === 0) return null;
  const size = fs.blocks * fs.bsize;
  const free = fs.bavail * fs.bsize;
  // "full" with some slack: seen on the real node, df in the agent's command showed 0 bytes
  // free and codex's own last write failed with ENOSPC, yet once codex had exited the runner
  // found blocks free again (codex lets go of files of its own as it exits)
  if (free < FULL_SLACK_BYTES) {
    const mib = (n: number) => (n / 2 ** 20).toFixed(0);
    return new PagewrightError(
      'WorkDirFull',
      `the agent filled its work directory: ${mib(size - free)} of ${mib(size)} MiB used (${Math.round(free / 1024)} KiB free) when the run ended (PAGEWRIGHT_RUNNER_WORK_SIZE_LIMIT); writes past it fail with ENOSPC`,
    );
  }
  return null;
}
