/**
 * What a runner pod's state says about its attempt, for when the runner could not tell us itself
 * (no callback, no manifest in storage). Pure: a V1Pod in, a verdict out.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { FailureReason } from '../common/errors.js';

export type PodVerdict =
  | { state: 'pending' }
  | { state: 'running' }
  /** The container exited 0: the runner finished (its result comes by callback or manifest). */
  | { state: 'succeeded' }
  | { state: 'failed'; reason: FailureReason; message: string };

const IMAGE_PULL_REASONS = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull']);

export function classifyPod(pod: V1Pod, opts: { now: number; imagePullTimeoutMs: number }): PodVerdict {
  const status = pod.status ?? {};
  const container = status.containerStatuses?.[0];

  if (status.phase === 'Failed' || status.phase === 'Succeeded') {
    if (status.reason === 'DeadlineExceeded') {
      return { state: 'failed', reason: 'DeadlineExceeded', message: status.message ?? 'the pod ran past its activeDeadlineSeconds' };
    }
    if (status.reason === 'Evicted') {
      return { state: 'failed', reason: 'Evicted', message: status.message ?? 'the pod was evicted from its node' };
    }
    const terminated = container?.state?.terminated ?? container?.lastState?.terminated;
    // containerd marks a container OOMKilled after any OOM kill in its cgroup, even one of a
    // process that was not its main one, which then exits 0 (seen on the real node when codex
    // still ran in the runner's container). Only a runner that died of it failed.
    if (terminated?.reason === 'OOMKilled' && terminated.exitCode !== 0) {
      return { state: 'failed', reason: 'OOMKilled', message: `the runner exceeded its memory limit (exit code ${terminated.exitCode})` };
    }
    if (status.phase === 'Succeeded') return { state: 'succeeded' };
    if (terminated) {
      const why = terminated.reason && terminated.reason !== 'Error' ? ` (${terminated.reason})` : '';
      return {
        state: 'failed',
        reason: 'RunnerFailed',
        message: `the runner exited with code ${terminated.exitCode}${why} without reporting a result`,
      };
    }
    return { state: 'failed', reason: 'PodLost', message: status.message ?? `the pod ended ${status.phase} without a container status` };
  }

  const waiting = container?.state?.waiting;
  if (waiting?.reason && IMAGE_PULL_REASONS.has(waiting.reason)) {
    const created = Date.parse(String(pod.metadata?.creationTimestamp ?? '')) || opts.now;
    if (waiting.reason === 'InvalidImageName' || opts.now - created >= opts.imagePullTimeoutMs) {
      return {
        state: 'failed',
        reason: 'ImagePullFailed',
        message: `${waiting.reason}: ${waiting.message ?? pod.spec?.containers[0]?.image}`,
      };
    }
  }
  if (status.phase === 'Running') return { state: 'running' };
  return { state: 'pending' };
}
