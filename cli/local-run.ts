/**
 * The embedded default (DESIGN.md): one job on one machine without a cluster. Storage and the
 * model gateway run in-process, the runner is a child process as in a pod, and a small callback
 * receiver plays the manager. Used by `pagewright run` and the tests.
 *
 * The key stays here, in the gateway: the runner (and the agent it starts) get a per-run gateway
 * credential and a minimal environment, none of the user's variables beyond what they need. What
 * a pod adds and this does not: the agent runs as the user, with the runner, not in a container
 * of its own (README "Security").
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { x as extract } from 'tar';
import { silentLogger } from '../common/logger.js';
import { DEFAULT_BUDGET, DEFAULT_MODEL } from '../common/models.js';
import { resolveRunnerEnv, runnerEnvironment } from '../common/runner-launch.js';
import type { JobProgress, JobResult, RunnerJobInput, Usage } from '../common/schemas.js';
import { StorageClient } from '../common/storage-client.js';
import { JobTokens } from '../common/tokens.js';
import { startEmbeddedGateway } from '../gateway/embedded.js';
import { packDirectory } from '../runner/archive.js';
import { startStorageServer } from '../storage/server.js';
import { startCallbackReceiver } from './callback-receiver.js';
import { bundledCodexBinary } from './codex-binary.js';

export interface LocalRunOptions {
  siteDir: string;
  prompt: string;
  llmUrl: string;
  llmKey: string;
  model?: string;
  timeoutSeconds?: number;
  /** Where output.tar.gz, the extracted site, the manifest and the log are written. */
  outDir: string;
  onProgress?: (p: JobProgress) => void;
  /** Runner stderr (JSON log lines); default: dropped (the log is saved to outDir). */
  onRunnerLog?: (chunk: Buffer) => void;
  codexBinary?: string;
  instructionsPath?: string;
  extraEnv?: Record<string, string>;
}

export interface LocalRunResult {
  result: JobResult;
  /** What the run used of the model (the gateway's count). */
  usage: Usage;
  exitCode: number | null;
  jobId: string;
  outputArchive: string | null;
  outputSite: string | null;
  logPath: string | null;
}

const here = fileURLToPath(new URL('.', import.meta.url));
/** Same extension as this file: .ts under tsx (tests), .js when built. */
const ext = extname(fileURLToPath(import.meta.url));

function runnerEntry(): { script: string; nodeArgs: string[] } {
  return { script: join(here, '..', 'runner', `main${ext}`), nodeArgs: ext === '.ts' ? ['--import', 'tsx'] : [] };
}

function defaultInstructionsPath(): string {
  // instructions.md is not compiled: from dist/cli it lives in the source tree
  return ext === '.ts' ? join(here, '..', 'runner', 'instructions.md') : join(here, '..', '..', 'runner', 'instructions.md');
}

export async function runLocalJob(opts: LocalRunOptions): Promise<LocalRunResult> {
  const scratch = await mkdtemp(join(tmpdir(), 'pagewright-'));
  const jobId = `local-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const siteId = 'local-site';
  const adminToken = randomBytes(24).toString('hex');
  const tokenSecret = randomBytes(32).toString('hex');
  const storage = await startStorageServer(
    {
      host: '127.0.0.1',
      port: 0,
      dataDir: join(scratch, 'storage'),
      adminToken,
      tokenSecret,
      maxArtifactBytes: 2 * 1024 ** 3,
      maxManifestBytes: 16 * 1024 ** 2,
      maxLogBytes: 64 * 1024 ** 2,
    },
    silentLogger,
  );
  const ttlSeconds = (opts.timeoutSeconds ?? 1800) + 3600;
  const token = await new JobTokens(tokenSecret).issue({ jobId, siteId, attempt: 1, ttlSeconds });
  const receiver = await startCallbackReceiver({ jobId, token, onProgress: opts.onProgress ?? (() => {}) });
  const gateway = await startEmbeddedGateway({
    upstreamUrl: opts.llmUrl,
    llmKey: opts.llmKey,
    jobId,
    model: opts.model ?? DEFAULT_MODEL,
    budget: DEFAULT_BUDGET,
    ttlSeconds,
    logger: silentLogger,
  });
  try {
    const admin = new StorageClient({ baseUrl: storage.url, token: adminToken });
    const siteArchive = join(scratch, 'site.tar.gz');
    await packDirectory(resolve(opts.siteDir), siteArchive);
    await admin.putSiteArtifact(siteId, createReadStream(siteArchive));

    const job: RunnerJobInput = {
      job_id: jobId,
      site_id: siteId,
      prompt: opts.prompt,
      attempt: 1,
      ...(opts.model ? { model: opts.model } : {}),
      ...(opts.timeoutSeconds ? { timeout_seconds: opts.timeoutSeconds } : {}),
    };
    const { script, nodeArgs } = runnerEntry();
    const runner = spawn(process.execPath, [...nodeArgs, script], {
      stdio: ['ignore', 'inherit', 'pipe'],
      env: resolveRunnerEnv(
        runnerEnvironment({
          job,
          port: 0,
          host: '127.0.0.1',
          workDir: join(scratch, 'work'),
          llmUrl: gateway.url,
          managerUrl: receiver.url,
          storageUrl: storage.url,
          ...(opts.model ? { model: opts.model } : {}),
          codexBinary: opts.codexBinary ?? bundledCodexBinary(),
          instructionsPath: opts.instructionsPath ?? defaultInstructionsPath(),
          extra: { ...passThroughEnv(process.env), PAGEWRIGHT_EXIT_DELAY_MS: '0', ...opts.extraEnv },
        }),
        { 'runner-token': token, 'gateway-credential': gateway.credential },
      ),
    });
    runner.stderr?.on('data', (chunk: Buffer) => opts.onRunnerLog?.(chunk));
    const exited = once(runner, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    // the runner calls back before it exits; if it dies without calling back, say so
    const result = await Promise.race([
      receiver.result,
      exited.then(async ([code, signal]) => {
        const late = await Promise.race([receiver.result, new Promise<null>((r) => setTimeout(() => r(null), 500))]);
        if (late) return late;
        throw new Error(`runner exited (code ${code}, signal ${signal}) without reporting a result`);
      }),
    ]);
    const [exitCode] = await exited;
    gateway.end();
    // the gateway's account of a refusal is the one to trust (the agent's own cannot be)
    const refusal = gateway.refusal();
    const reported = refusal && result.status === 'failed' ? { ...result, reason: refusal.reason, error: refusal.message } : result;

    await mkdir(opts.outDir, { recursive: true });
    const saved = await saveOutputs(admin, jobId, reported, opts.outDir);
    return { result: reported, usage: gateway.usage(), exitCode, jobId, ...saved };
  } finally {
    await gateway.close();
    await receiver.close();
    await storage.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

async function saveOutputs(
  admin: StorageClient,
  jobId: string,
  result: JobResult,
  outDir: string,
): Promise<Pick<LocalRunResult, 'outputArchive' | 'outputSite' | 'logPath'>> {
  const jobDir = join(outDir, jobId);
  await mkdir(jobDir, { recursive: true });
  let logPath: string | null = join(jobDir, 'job.log');
  try {
    await pipeline((await admin.getJobObject(jobId, 'log')).body, createWriteStream(logPath));
  } catch {
    logPath = null;
  }
  if (result.status !== 'completed') return { outputArchive: null, outputSite: null, logPath };
  const outputArchive = join(jobDir, 'output.tar.gz');
  await pipeline((await admin.getJobObject(jobId, 'output.tar.gz')).body, createWriteStream(outputArchive));
  await pipeline((await admin.getJobObject(jobId, 'manifest.json')).body, createWriteStream(join(jobDir, 'manifest.json')));
  const outputSite = join(jobDir, 'site');
  await mkdir(outputSite, { recursive: true });
  await extract({ file: outputArchive, cwd: outputSite });
  return { outputArchive, outputSite, logPath };
}

/**
 * What the runner may see of the user's environment: what locates programs and certificates,
 * the locale and the time zone. Never the user's keys, tokens or anything else.
 */
const PASS_THROUGH = /^(PATH|LANG|LC_ALL|LC_CTYPE|TZ|TMPDIR|SSL_CERT_FILE|SSL_CERT_DIR|NODE_EXTRA_CA_CERTS)$/;

function passThroughEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => PASS_THROUGH.test(e[0]) && e[1] !== undefined));
}
