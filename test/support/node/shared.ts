/**
 * One real node for a whole mocha run, started by the first suite that needs it and stopped by
 * the root hook (mocha-hooks.ts), like the shared control plane. It carries Pagewright's images
 * and the fault image the manager's failure tests use (runner-faults/).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../sites.js';
import { type RealNode, startRealNode } from './cluster.js';
import { IMAGES } from './deploy.js';
import { dockerImageId } from './images.js';

const run = promisify(execFile);

export const RUNNER_IMAGE = 'pagewright-runner:0.1.0';
export const FAULT_IMAGE = 'pagewright-runner-faults:test';

/** Builds the fault image on the current runner image (a second or so: one small layer). */
async function ensureFaultImage(): Promise<void> {
  if (!(await dockerImageId(RUNNER_IMAGE))) throw new Error(`${RUNNER_IMAGE} is not built: run make images (make test does)`);
  await run('docker', [
    'build',
    '-q',
    '--build-arg',
    `RUNNER_IMAGE=${RUNNER_IMAGE}`,
    '-t',
    FAULT_IMAGE,
    join(REPO_ROOT, 'test/support/node/runner-faults'),
  ]);
}

let shared: Promise<RealNode> | null = null;

export function sharedRealNode(): Promise<RealNode> {
  shared ??= (async () => {
    await ensureFaultImage();
    return startRealNode({ images: [...IMAGES, FAULT_IMAGE] });
  })();
  return shared;
}

export async function stopSharedRealNode(): Promise<void> {
  if (!shared) return;
  const node = await shared.catch(() => null);
  shared = null;
  await node?.stop();
}
