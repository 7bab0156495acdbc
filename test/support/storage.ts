/** The real storage service on a temp dir, in-process, for tests. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { silentLogger } from '../../common/logger.js';
import { StorageClient } from '../../common/storage-client.js';
import { JobTokens } from '../../common/tokens.js';
import { type StorageServerConfig, startStorageServer, type StorageServer } from '../../storage/server.js';

export interface TestStorage extends StorageServer {
  dataDir: string;
  adminToken: string;
  tokenSecret: string;
  tokens: JobTokens;
  admin: StorageClient;
  /** Every file under the data dir with its size: to assert that a rejected request changed nothing. */
  snapshot(): Promise<Record<string, number>>;
}

export interface TestStorageOptions {
  dataDir?: string;
  maxArtifactBytes?: number;
  host?: string;
  /** Any other setting (quota, collection, timeouts). */
  config?: Partial<StorageServerConfig>;
}

export async function startTestStorage(opts: TestStorageOptions = {}): Promise<TestStorage> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'pw-storage-')));
  // fixed through config to restart on the same data dir with the same credentials
  const adminToken = opts.config?.adminToken ?? randomBytes(24).toString('hex');
  const tokenSecret = opts.config?.tokenSecret ?? randomBytes(32).toString('hex');
  const server = await startStorageServer(
    {
      host: opts.host ?? '127.0.0.1',
      port: 0,
      dataDir,
      adminToken,
      tokenSecret,
      maxArtifactBytes: opts.maxArtifactBytes ?? 64 * 1024 * 1024,
      maxManifestBytes: 1024 * 1024,
      maxLogBytes: 1024 * 1024,
      ...opts.config,
    },
    silentLogger,
  );
  return {
    ...server,
    dataDir,
    adminToken,
    tokenSecret,
    tokens: new JobTokens(tokenSecret),
    admin: new StorageClient({ baseUrl: server.url, token: adminToken }),
    snapshot: () => snapshotDir(dataDir),
    async close() {
      await server.close();
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export async function snapshotDir(root: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (!e.isFile()) continue;
    const full = join(e.parentPath, e.name);
    out[relative(root, full)] = (await stat(full)).size;
  }
  return out;
}
