/** Services as child processes (so their RSS is theirs alone), from the built dist/. */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { getFreePort } from '../../test/support/ports.js';
import { waitFor } from '../../test/support/processes.js';
import { REPO_ROOT } from '../../test/support/sites.js';

export interface ChildService {
  url: string;
  pid: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function startChild(
  argv: string[],
  env: Record<string, string>,
  health: string,
  cleanup: () => Promise<void>,
): Promise<ChildService> {
  const port = await getFreePort();
  const proc = spawn(process.execPath, argv, {
    env: { PATH: process.env.PATH, ...env, PORT: String(port), PAGEWRIGHT_STORAGE_PORT: String(port) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    `${argv.join(' ')} ready`,
    async () => {
      if (proc.exitCode !== null) throw new Error(`${argv.join(' ')} exited ${proc.exitCode}`);
      const res = await request(url + health).catch(() => null);
      await res?.body.dump();
      return res !== null;
    },
    20_000,
    50,
  );
  return {
    url,
    pid: proc.pid!,
    proc,
    async stop() {
      proc.kill('SIGTERM');
      if (proc.exitCode === null) await once(proc, 'exit');
      await cleanup();
    },
  };
}

export interface StorageChild extends ChildService {
  adminToken: string;
  tokenSecret: string;
  dataDir: string;
}

export async function startStorageChild(env: Record<string, string> = {}): Promise<StorageChild> {
  const dataDir = await mkdtemp(join(tmpdir(), 'pw-bench-storage-'));
  const adminToken = randomBytes(24).toString('hex');
  const tokenSecret = randomBytes(32).toString('hex');
  const svc = await startChild(
    [join(REPO_ROOT, 'dist/storage/main.js')],
    {
      PAGEWRIGHT_STORAGE_HOST: '127.0.0.1',
      PAGEWRIGHT_STORAGE_DIR: dataDir,
      PAGEWRIGHT_STORAGE_ADMIN_TOKEN: adminToken,
      PAGEWRIGHT_TOKEN_SECRET: tokenSecret,
      PAGEWRIGHT_STORAGE_MAX_ARTIFACT_BYTES: String(4 * 1024 ** 3),
      PAGEWRIGHT_LOG_LEVEL: 'warn',
      ...env,
    },
    '/healthz',
    () => rm(dataDir, { recursive: true, force: true }),
  );
  return { ...svc, adminToken, tokenSecret, dataDir };
}

export async function startRawDiskServer(): Promise<ChildService> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-bench-raw-'));
  return startChild([join(REPO_ROOT, 'bench/support/raw-disk-server.mjs')], { DIR: dir }, '/', () =>
    rm(dir, { recursive: true, force: true }),
  );
}
