/**
 * The commands that need no cluster: `pagewright run` (the embedded default: one job end to end
 * on this machine; offline against the bundled scripted model server without PAGEWRIGHT_LLM_KEY)
 * and `pagewright demo-model` (that scripted model on its own, for a dev cluster without a real
 * model, run from the manager image as a Deployment, its key from a Secret).
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runMain } from '../common/main.js';
import { TIMEOUT_SECONDS } from '../common/schemas.js';
import { runLocalJob } from './local-run.js';
import type { RecordedRequest } from './model-server.js';
import { type OfflineModel, startOfflineModel } from './offline-model.js';

const DEMO_MODEL_PORT = 8090;
const DEMO_MODEL_KEY_ENV = 'PAGEWRIGHT_DEMO_MODEL_KEY';
const DEMO_MODEL_DELAY_ENV = 'PAGEWRIGHT_DEMO_MODEL_DELAY_MS';

export const LOCAL_USAGE = `usage: pagewright run --site DIR --prompt TEXT [--model NAME] [--timeout SECONDS] [--out DIR] [--verbose]
       pagewright demo-model [--port N] [--host ADDRESS]

Runs one site-edit job on this machine: storage in-process, the runner as a child process,
the OpenAI Codex CLI on a copy of DIR. DIR itself is never modified; the edited site is
written under --out (default ./pagewright-output).

demo-model serves the scripted model that run uses offline (an OpenAI Responses API
stand-in whose edits are scripted), on --host (default 0.0.0.0) and --port (default
${DEMO_MODEL_PORT}), until SIGTERM or SIGINT. It prints its URL and its key (a key set in
PAGEWRIGHT_DEMO_MODEL_KEY, e.g. from a Secret, is used but not echoed), then a line per
request: its method, target and the tool types it declared.

environment:
  PAGEWRIGHT_LLM_KEY   OpenAI API key; without it the job runs offline against a scripted model
  PAGEWRIGHT_LLM_URL   model endpoint (default https://api.openai.com/v1)
  PAGEWRIGHT_CODEX_MODEL  model name (default: the runner's default)
  PAGEWRIGHT_DEMO_MODEL_KEY  demo-model: the key it accepts (default: a random one)
  PAGEWRIGHT_DEMO_MODEL_DELAY_MS  demo-model: wait this long before each answer (default 0), so
                       that a job runs long enough to watch`;

/** parseArgs' answer, or the usage and exit 2 when the arguments are wrong. */
function parsed<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    return fail((err as Error).message);
  }
}

function fail(message: string): never {
  process.stderr.write(`error: ${message}\nSee 'pagewright --help' for usage.\n`);
  process.exit(2);
}

/** `--help` or `-h` anywhere: the usage on stdout, exit 0 (as kubectl and git). */
function helpAsked(argv: string[]): boolean {
  if (!argv.includes('--help') && !argv.includes('-h')) return false;
  process.stdout.write(`${LOCAL_USAGE}\n`);
  return true;
}

export async function runCommand(argv: string[]): Promise<number> {
  if (helpAsked(argv)) return 0;
  const { values } = parsed(() =>
    parseArgs({
      args: argv,
      options: {
        site: { type: 'string' },
        prompt: { type: 'string' },
        model: { type: 'string' },
        timeout: { type: 'string' },
        out: { type: 'string', default: 'pagewright-output' },
        verbose: { type: 'boolean', default: false },
      },
      strict: true,
    }),
  );
  if (!values.site) fail('--site DIR is required');
  if (!values.prompt?.trim()) fail('--prompt TEXT is required');
  const timeout = values.timeout === undefined ? undefined : Number(values.timeout);
  if (timeout !== undefined && (!Number.isInteger(timeout) || timeout < TIMEOUT_SECONDS.min || timeout > TIMEOUT_SECONDS.max)) {
    fail(`--timeout must be an integer from ${TIMEOUT_SECONDS.min} to ${TIMEOUT_SECONDS.max}`);
  }
  const { stat } = await import('node:fs/promises');
  const siteStat = await stat(values.site).catch(() => null);
  if (!siteStat?.isDirectory()) fail(`--site ${values.site} is not a directory`);

  const key = process.env.PAGEWRIGHT_LLM_KEY;
  let offline: OfflineModel | null = null;
  let llm: { url: string; key: string; model?: string };
  if (key) {
    llm = { url: process.env.PAGEWRIGHT_LLM_URL || 'https://api.openai.com/v1', key };
    say(`model: ${llm.url}`);
  } else {
    offline = await startOfflineModel();
    llm = { url: offline.url, key: offline.key, model: offline.model };
    say('offline demo: PAGEWRIGHT_LLM_KEY is not set, so the agent talks to the bundled scripted');
    say('model server instead of OpenAI. The real Codex CLI runs and really edits the files, but the');
    say('edit is a scripted one. Set PAGEWRIGHT_LLM_KEY to use a real model.');
  }
  const model = values.model ?? process.env.PAGEWRIGHT_CODEX_MODEL ?? llm.model;
  const started = Date.now();
  say(`site: ${resolve(values.site)}`);
  say(`prompt: ${values.prompt}`);
  try {
    const outcome = await runLocalJob({
      siteDir: values.site,
      prompt: values.prompt,
      llmUrl: llm.url,
      llmKey: llm.key,
      outDir: resolve(values.out),
      ...(model ? { model } : {}),
      ...(timeout ? { timeoutSeconds: timeout } : {}),
      onProgress: (p) => say(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${p.phase}`),
      ...(values.verbose ? { onRunnerLog: (chunk: Buffer) => process.stderr.write(chunk) } : {}),
    });
    const { result } = outcome;
    say('');
    if (result.status === 'completed') {
      say(`completed in ${((Date.now() - started) / 1000).toFixed(1)}s: ${result.files_changed} file(s) changed`);
      for (const f of result.files) say(`  ${f}`);
      say(`summary: ${result.summary}`);
      say(`output: ${outcome.outputSite}`);
      say(`archive: ${outcome.outputArchive} (sha256 ${result.output_version})`);
    } else {
      say(`failed: ${result.reason}: ${result.error}`);
    }
    if (outcome.logPath) say(`log: ${outcome.logPath}`);
    return result.status === 'completed' ? 0 : 1;
  } finally {
    await offline?.close();
  }
}

export async function demoModelCommand(argv: string[]): Promise<void> {
  if (helpAsked(argv)) return;
  const { values } = parsed(() =>
    parseArgs({
      args: argv,
      options: { port: { type: 'string', default: String(DEMO_MODEL_PORT) }, host: { type: 'string', default: '0.0.0.0' } },
      strict: true,
    }),
  );
  const port = Number(values.port);
  if (!/^\d+$/.test(values.port) || port > 65535) fail('--port must be an integer from 0 to 65535');
  if (!values.host) fail('--host must not be empty');
  const fixedKey = process.env[DEMO_MODEL_KEY_ENV];
  if (fixedKey !== undefined && !fixedKey.trim()) fail(`${DEMO_MODEL_KEY_ENV} is set but empty`);
  const delay = process.env[DEMO_MODEL_DELAY_ENV] ?? '0';
  if (!/^\d+$/.test(delay)) fail(`${DEMO_MODEL_DELAY_ENV} must be a whole number of milliseconds, got "${delay}"`);
  let model: OfflineModel | undefined;
  // announced only once runMain has its SIGTERM/SIGINT handlers in place, so that a supervisor
  // signalling as soon as it reads the URL gets a clean stop
  await runMain('pagewright demo-model', async () => {
    const started = await startOfflineModel({
      host: values.host,
      port,
      delayMs: Number(delay),
      onRequest: (r) => say(accessLine(r)),
      ...(fixedKey ? { apiKey: fixedKey } : {}),
    });
    model = started;
    return () => started.close();
  });
  if (!model) return;
  say(`scripted demo model listening on ${values.host}:${new URL(model.url).port}: its edits are scripted, not smart`);
  say(`url: ${model.url}`);
  // a key given through the environment (a Secret in a cluster) is not echoed into logs
  say(`key: ${fixedKey ? `from ${DEMO_MODEL_KEY_ENV}` : model.key}`);
  say(`model: ${model.model}`);
  if (Number(delay) > 0) say(`each answer waits ${delay} ms (${DEMO_MODEL_DELAY_ENV})`);
}

/** The demo model's access log: what reached the model endpoint (its method, target and the tool types a call declared). */
function accessLine(r: RecordedRequest): string {
  const tools = (r.body as { tools?: unknown } | null)?.tools;
  const types = Array.isArray(tools) ? [...new Set(tools.map((t) => String((t as { type?: unknown })?.type)))].sort().join(',') : '';
  return `request: ${r.method} ${r.url}${types ? ` tools=${types}` : ''}`;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}
