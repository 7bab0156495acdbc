/** Small real sites for tests: a copy of examples/site in a temp dir. */
import { cp, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const EXAMPLE_SITE = fileURLToPath(new URL('../../examples/site', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export async function copyExampleSite(): Promise<{ root: string; site: string }> {
  const root = await mkdtemp(join(tmpdir(), 'pw-site-'));
  const site = join(root, 'site');
  await cp(EXAMPLE_SITE, site, { recursive: true });
  return { root, site };
}
