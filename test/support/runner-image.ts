/**
 * How the local kubelet runs the `pagewright-runner` image: the container layout of
 * Dockerfile.runner mapped onto this checkout (built with `make build`).
 *
 *   /app                     -> the repository (dist/ and node_modules/)
 *   /.codex/instructions.md  -> runner/instructions.md
 *   /usr/local/bin/codex     -> the Codex binary from the @openai/codex npm package
 */
import { join } from 'node:path';
import { bundledCodexBinary } from '../../cli/codex-binary.js';
import type { ImageRuntime } from './local-kubelet.js';
import { REPO_ROOT } from './sites.js';

export const RUNNER_IMAGE = 'pagewright-runner';

export function runnerImageRuntime(extraEnv: Record<string, string> = {}): ImageRuntime {
  return {
    command: (c) => {
      const argv = [...(c.command ?? []), ...(c.args ?? [])];
      if (argv[0] !== 'node') throw new Error(`runner image: expected a node command, got ${argv.join(' ')}`);
      return [process.execPath, ...argv.slice(1)];
    },
    paths: {
      '/app': REPO_ROOT,
      '/.codex/instructions.md': join(REPO_ROOT, 'runner', 'instructions.md'),
      '/usr/local/bin/codex': bundledCodexBinary(),
    },
    // pods share the host network here: bind the pod's own loopback address
    env: (ctx) => ({ PAGEWRIGHT_WORKER_HOST: ctx.podIP, ...extraEnv }),
  };
}
