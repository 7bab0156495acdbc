/**
 * The preview's API app (preview/server.ts: the router under the aggregated API's prefix) in a
 * process of its own, for bench/preview.ts, compiled (dist/, as the image runs it: under tsx,
 * every closure the request path creates goes through its keepNames helper, a cost production
 * does not have). One site, resolved from the environment (no API server), its version read
 * from real storage into a cache dir. Prints its URL on stdout.
 */
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from '../../test/support/sites.js';

const dist = (module: string) => import(pathToFileURL(join(REPO_ROOT, 'dist', module)).href);
const { createPreviewApps } = (await dist('preview/server.js')) as typeof import('../../preview/server.js');
const { StorageClient } = (await dist('common/storage-client.js')) as typeof import('../../common/storage-client.js');
const { silentLogger } = (await dist('common/logger.js')) as typeof import('../../common/logger.js');
const { listen } = (await dist('common/server-timeouts.js')) as typeof import('../../common/server-timeouts.js');

const env = (name: string) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const site = { siteId: env('BENCH_SITE_ID'), currentVersion: env('BENCH_SITE_VERSION') };
const apps = createPreviewApps({
  storage: new StorageClient({ baseUrl: env('BENCH_STORAGE_URL'), token: env('BENCH_STORAGE_TOKEN') }),
  resolveJob: async () => null,
  resolveSite: async (_namespace, name) => (name === site.siteId ? site : null),
  cacheDir: env('BENCH_CACHE_DIR'),
  cacheBytes: 4 * 1024 ** 3,
  // BENCH_PREVIEW_MEMORY=0: every file through express.static (send), for an A/B of the answer memory
  ...(process.env.BENCH_PREVIEW_MEMORY === undefined ? {} : { memoryBytes: Number(process.env.BENCH_PREVIEW_MEMORY) }),
  logger: silentLogger,
});
const server = await listen(apps.api, 0, '127.0.0.1', { headersMs: 30_000, requestMs: 60_000, keepAliveMs: 65_000 });
console.log(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
// a normal exit, so that --cpu-prof (BENCH_PREVIEW_PROFILE) writes its profile
process.on('SIGTERM', () => process.exit(0));
