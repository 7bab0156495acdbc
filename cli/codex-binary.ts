/**
 * Where the Codex CLI's native binary lives inside the @openai/codex npm package (installed
 * through its platform-specific optional dependency). Using it directly saves the Node wrapper
 * process that `node_modules/.bin/codex` would add.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const TARGETS: Record<string, { pkg: string; triple: string }> = {
  'linux-x64': { pkg: '@openai/codex-linux-x64', triple: 'x86_64-unknown-linux-musl' },
  'linux-arm64': { pkg: '@openai/codex-linux-arm64', triple: 'aarch64-unknown-linux-musl' },
};

export function bundledCodexBinary(): string {
  const require = createRequire(import.meta.url);
  const target = TARGETS[`${process.platform}-${process.arch}`];
  if (target) {
    try {
      const dir = dirname(require.resolve(`${target.pkg}/package.json`));
      const binary = join(dir, 'vendor', target.triple, 'bin', 'codex');
      if (existsSync(binary)) return binary;
    } catch {
      // fall through to the wrapper
    }
  }
  // the npm wrapper finds the binary itself on any platform it supports
  return join(dirname(require.resolve('@openai/codex/package.json')), 'bin', 'codex.js');
}
