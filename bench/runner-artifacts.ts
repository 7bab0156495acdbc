/**
 * The runner's artifact path: a generated site (about 2,000 files, text and incompressible
 * "images") fetched from the real storage service, unpacked, packed and uploaded by the real
 * runner (dist/, as in its image), with a model that ends the Codex phase at once. Baseline in
 * the same run: `curl | tar xz` then `tar cz | curl -T` against the same storage.
 * Runner time = its fetching + unpacking + patching + packing + uploading phase durations.
 * As in a pod (BENCH_RUNNER_POD=1, the default): codex runs in the agent server's process
 * (`bundle.mjs agent`, the agent container's), so the runner opens the site to the agent's group
 * as it does in a pod (here both are the same uid); BENCH_RUNNER_POD=0 runs codex as the
 * runner's own child, as `pagewright run` does.
 * Headline: runner / baseline (goal <= 1.2), and the runner's peak RSS at 50 MB and 500 MB.
 *
 *   make bench-runner        (BENCH_RUNS=5; BENCH_SITE_MIB=50, BENCH_BIG_SITE_MIB=500, BENCH_RUNNER_POD=1)
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { bundledCodexBinary } from '../cli/codex-binary.js';
import { resolveRunnerEnv, runnerEnvironment } from '../common/runner-launch.js';
import { StorageClient } from '../common/storage-client.js';
import { JobTokens } from '../common/tokens.js';
import type { RunnerStatus } from '../common/schemas.js';
import { packDirectory } from '../runner/archive.js';
import { startModelServer } from '../cli/model-server.js';
import { getFreePort } from '../test/support/ports.js';
import { waitFor } from '../test/support/processes.js';
import { REPO_ROOT } from '../test/support/sites.js';
import { RUNS, headline, printTable, record, rss, sized, summarize, summarizeAll, timed } from './lib.js';
import { startStorageChild } from './support/services.js';

const run = promisify(execFile);
const SITE_MIB = sized('BENCH_SITE_MIB', 50, 2);
const BIG_SITE_MIB = sized('BENCH_BIG_SITE_MIB', 500, 0);
const FILES = sized('BENCH_SITE_FILES', 2000, 100);
const AS_IN_A_POD = process.env.BENCH_RUNNER_POD !== '0';
const ARTIFACT_PHASES = ['fetching_artifact', 'unpacking', 'patching_instructions', 'packing_result', 'uploading'] as const;

/** 80% text files (~8 KiB of varied HTML), 20% images (random bytes) sized to reach `mib`. */
async function generateSite(dir: string, mib: number): Promise<void> {
  const images = FILES / 5;
  const textBytes = 8 * 1024;
  const imageBytes = Math.max(1024, Math.floor((mib * 1024 * 1024 - (FILES - images) * textBytes) / images));
  const words = 'bread crust oven flour rye sourdough croissant butter sugar morning harbor lane bakery fresh'.split(' ');
  for (let i = 0; i < FILES; i++) {
    const sub = join(dir, `section-${i % 40}`);
    await mkdir(sub, { recursive: true });
    if (i % 5 === 0) {
      await writeFile(join(sub, `photo-${i}.jpg`), randomBytes(imageBytes));
    } else {
      let text = `<!doctype html><title>page ${i}</title><main>\n`;
      while (text.length < textBytes)
        text += `<p>${Array.from({ length: 12 }, (_, k) => words[(i * 7 + k * 13 + text.length) % words.length]).join(' ')} ${i}</p>\n`;
      await writeFile(join(sub, `page-${i}.html`), text.slice(0, textBytes));
    }
  }
  await mkdir(join(dir, '.codex'), { recursive: true });
  await writeFile(join(dir, '.codex', 'instructions.md'), 'site instructions\n');
}

interface RunnerRun {
  artifactMs: number;
  phases: Record<string, number>;
  peakRssMiB: number;
}

async function runRunner(opts: {
  storageUrl: string;
  tokens: JobTokens;
  siteId: string;
  modelUrl: string;
  modelKey: string;
  jobId: string;
}): Promise<RunnerRun> {
  const port = await getFreePort();
  const workDir = await mkdtemp(join(tmpdir(), 'pw-bench-runner-'));
  const agent = AS_IN_A_POD ? await startAgent() : null;
  const token = await opts.tokens.issue({ jobId: opts.jobId, siteId: opts.siteId, attempt: 1, ttlSeconds: 3600 });
  const proc = spawn(process.execPath, [join(REPO_ROOT, 'dist/runner/bundle.mjs')], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: resolveRunnerEnv(
      runnerEnvironment({
        job: { job_id: opts.jobId, site_id: opts.siteId, prompt: 'no change needed', attempt: 1 },
        port,
        host: '127.0.0.1',
        workDir,
        llmUrl: opts.modelUrl,
        storageUrl: opts.storageUrl,
        codexBinary: bundledCodexBinary(),
        instructionsPath: join(REPO_ROOT, 'runner/instructions.md'),
        ...(agent ? { agentUrl: agent.url } : {}),
        extra: {
          PATH: process.env.PATH ?? '',
          PAGEWRIGHT_MAX_ARCHIVE_ENTRIES: '10000',
          PAGEWRIGHT_MAX_UNPACKED_BYTES: String(2 * 1024 ** 3),
          PAGEWRIGHT_EXIT_DELAY_MS: '5000',
          PAGEWRIGHT_LOG_LEVEL: 'warn',
        },
      }),
      { 'runner-token': token, 'gateway-credential': opts.modelKey },
    ),
  });
  const exited = once(proc, 'exit');
  try {
    const status = await waitFor(
      'runner finished',
      async () => {
        const res = await request(`http://127.0.0.1:${port}/status`).catch(() => null);
        if (!res) return null;
        const s = (await res.body.json()) as RunnerStatus;
        return s.status === 'completed' || s.status === 'failed' ? s : null;
      },
      600_000,
      100,
    );
    if (status.status !== 'completed') throw new Error(`runner failed: ${status.reason} ${status.error}`);
    const { peakMiB } = await rss(proc.pid!);
    const phases = status.phase_durations_ms as Record<string, number>;
    return { artifactMs: ARTIFACT_PHASES.reduce((sum, p) => sum + (phases[p] ?? 0), 0), phases, peakRssMiB: peakMiB };
  } finally {
    proc.kill('SIGTERM');
    await exited;
    await agent?.stop();
    await rm(workDir, { recursive: true, force: true });
  }
}

/** The agent container's process (runner/agent-server.ts), from the same bundle. */
async function startAgent(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await getFreePort();
  const proc = spawn(process.execPath, [join(REPO_ROOT, 'dist/runner/bundle.mjs'), 'agent'], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PAGEWRIGHT_AGENT_PORT: String(port), PAGEWRIGHT_LOG_LEVEL: 'warn' },
  });
  const exited = once(proc, 'exit');
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    'the agent server',
    async () => {
      if (proc.exitCode !== null) throw new Error(`the agent server exited ${proc.exitCode}`);
      const res = await request(`${url}/health`).catch(() => null);
      await res?.body.dump();
      return res?.statusCode === 200;
    },
    20_000,
    50,
  );
  return {
    url,
    async stop() {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

async function baseline(storageUrl: string, adminToken: string, siteId: string, jobId: string): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-bench-tar-'));
  const auth = `Authorization: Bearer ${adminToken}`;
  try {
    const { ms } = await timed(() =>
      run('bash', [
        '-o',
        'pipefail',
        '-ec',
        `curl -sf -H "${auth}" ${storageUrl}/sites/${siteId}/artifact | tar xz -C "${dir}"
         tar cz -C "${dir}" . | curl -sf -T - -H "${auth}" ${storageUrl}/jobs/${jobId}/output.tar.gz >/dev/null`,
      ]),
    );
    return ms;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const storage = await startStorageChild();
const model = await startModelServer({
  script: () => ({ kind: 'message', text: JSON.stringify({ summary: 'Nothing to change.', files_changed: [] }) }),
});
const tokens = new JobTokens(storage.tokenSecret);
const admin = new StorageClient({ baseUrl: storage.url, token: storage.adminToken });
const scratch = await mkdtemp(join(tmpdir(), 'pw-bench-site-'));
const results: Record<string, number[]> = { runner: [], baseline: [], ratio: [], rss: [] };
const phaseRows: Record<string, number[]> = {};
let bigRss = NaN;
let bigRatio = NaN;
try {
  async function prepare(name: string, mib: number): Promise<number> {
    const dir = join(scratch, name);
    await generateSite(dir, mib);
    const archive = join(scratch, `${name}.tar.gz`);
    const packed = await packDirectory(dir, archive);
    await admin.putSiteArtifact(name, await readFile(archive));
    await rm(dir, { recursive: true, force: true });
    return packed.size;
  }
  const size = await prepare('site-small', SITE_MIB);
  console.log(
    `site: ${FILES} files, ${SITE_MIB} MiB unpacked, ${(size / 1024 / 1024).toFixed(1)} MiB as tar.gz; codex ${AS_IN_A_POD ? "in the agent server's process (as in a pod)" : "the runner's child"}`,
  );
  const common = { storageUrl: storage.url, tokens, modelUrl: model.url, modelKey: model.key };
  for (let i = 0; i < RUNS; i++) {
    const jobId = `bench-${i}-${randomBytes(3).toString('hex')}`;
    const order = i % 2 === 0;
    const b1 = order ? await baseline(storage.url, storage.adminToken, 'site-small', `${jobId}-tar`) : NaN;
    const r = await runRunner({ ...common, siteId: 'site-small', jobId });
    const b = order ? b1 : await baseline(storage.url, storage.adminToken, 'site-small', `${jobId}-tar`);
    results.runner!.push(r.artifactMs);
    results.baseline!.push(b);
    results.ratio!.push(r.artifactMs / b);
    results.rss!.push(r.peakRssMiB);
    for (const p of ARTIFACT_PHASES) {
      phaseRows[p] ??= [];
      phaseRows[p].push(r.phases[p] ?? 0);
    }
  }
  if (BIG_SITE_MIB > 0) {
    await prepare('site-big', BIG_SITE_MIB);
    const big = await runRunner({ ...common, siteId: 'site-big', jobId: `bench-big-${randomBytes(3).toString('hex')}` });
    const bigBase = await baseline(storage.url, storage.adminToken, 'site-big', `bench-big-tar-${randomBytes(3).toString('hex')}`);
    bigRss = big.peakRssMiB;
    bigRatio = big.artifactMs / bigBase;
    console.log(
      `\n${BIG_SITE_MIB} MiB site (1 run): runner ${big.artifactMs.toFixed(0)} ms, baseline ${bigBase.toFixed(0)} ms, ratio ${bigRatio.toFixed(2)}, runner peak RSS ${bigRss.toFixed(0)} MiB`,
    );
  }
} finally {
  await rm(scratch, { recursive: true, force: true });
  await model.close();
  await storage.stop();
}
printTable(`runner artifact path, ${SITE_MIB} MiB site`, [
  ['baseline curl|tar xz + tar cz|curl', results.baseline!, 'ms'],
  ['runner (fetch+unpack+patch+pack+upload)', results.runner!, 'ms'],
  ['ratio runner/baseline', results.ratio!, 'x'],
  ...ARTIFACT_PHASES.map((p) => [`  phase ${p}`, phaseRows[p]!, 'ms'] as [string, number[], string]),
  ['runner peak RSS', results.rss!, 'MiB'],
]);
await record('runner-artifacts', {
  as_in_a_pod: AS_IN_A_POD,
  site_mib: SITE_MIB,
  big_site_mib: BIG_SITE_MIB,
  runs: RUNS,
  ratio: summarize(results.ratio!),
  runner_ms: summarize(results.runner!),
  baseline_ms: summarize(results.baseline!),
  rss_mib: summarize(results.rss!),
  big_rss_mib: bigRss,
  big_ratio: bigRatio,
  phases: summarizeAll(phaseRows),
});
headline(
  `runner/baseline ${summarize(results.ratio!).median.toFixed(2)}x at ${SITE_MIB} MiB (goal <= 1.2); runner peak RSS ${summarize(results.rss!).median.toFixed(0)} MiB at ${SITE_MIB} MiB` +
    (BIG_SITE_MIB > 0 ? `, ${bigRss.toFixed(0)} MiB at ${BIG_SITE_MIB} MiB` : ''),
);

// open handles (watches, agents) must not keep a finished benchmark alive
process.exit(0);
