/** Mocha root hooks: stop the shared control plane once, after every suite ran. */
import { stopSharedControlPlane } from './control-plane.js';

export async function mochaGlobalTeardown(): Promise<void> {
  await stopSharedControlPlane();
}
