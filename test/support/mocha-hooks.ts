/** Mocha root hooks: stop the shared control plane and the shared real node once, after every suite ran. */
import { stopSharedControlPlane } from './control-plane.js';
import { stopSharedRealNode } from './node/shared.js';

export async function mochaGlobalTeardown(): Promise<void> {
  await stopSharedControlPlane();
  await stopSharedRealNode();
}
