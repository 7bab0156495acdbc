/**
 * Runs the real Codex CLI (`codex exec`) on one site, offline-safe and bounded:
 * - the model endpoint is a custom provider (OPENAI_BASE_URL is not honoured by 0.169.0), its
 *   key passed in codex's environment only, and the agent's shell commands get a minimal
 *   environment (inherit="core"): by default codex would hand them every variable it has,
 *   the LLM key and the job token included;
 * - the container's instructions go in as `developer_instructions` (0.169.0 ignores
 *   .codex/instructions.md), so no file is added to the site;
 * - codex's own hosted tools are off, so every request declares only function and custom tools
 *   (the gateway refuses the others, gateway/request-policy.ts): `web_search="disabled"`;
 *   `tool_search` goes with a model catalog whose models say `supports_search_tool: false`
 *   (0.169.0 has no flag for it: the catalog is the bundled one, `codex debug models
 *   --bundled`, with that one field changed); and `multi_agent` off (its namespace tool would
 *   appear in tool_search's place);
 * - unbounded connection retries are off, request/stream retries are bounded, and a deadline
 *   or an abort ends the run: SIGINT first (codex stops its command), then after a grace period
 *   SIGKILL of codex's process group and of every process carrying the run's marker, which
 *   reaches commands that codex started in their own session.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type JobFailure, PagewrightError, isJobFailure } from '../common/errors.js';
import { PROCESS_MARKER_ENV } from '../common/process-marker.js';
import { type AgentExit, type AgentLauncher, LocalLauncher, stopper } from './agent-launcher.js';
import { limitFailure } from './agent-limits.js';
import { type CodexEvent, FINAL_MESSAGE_SCHEMA, agentMessage, classifyCodexFailure, eventError, parseEventLine } from './codex-events.js';

/** The env var codex reads the provider key from (never passed on the command line). */
const KEY_ENV = 'PAGEWRIGHT_CODEX_LLM_KEY';
/** Variables codex itself may need from the runner's environment (TLS roots, locale, proxies). */
const PASS_THROUGH = /^(PATH|LANG|LC_ALL|TZ|SSL_CERT_FILE|SSL_CERT_DIR|NODE_EXTRA_CA_CERTS|HTTPS?_PROXY|NO_PROXY|https?_proxy|no_proxy)$/;

export interface CodexRunOptions {
  binary: string;
  siteDir: string;
  /** Per-run, writable, outside the site (and outside /tmp: codex warns there). */
  codexHome: string;
  prompt: string;
  instructions: string;
  model: string;
  llmUrl: string;
  llmKey: string;
  /** Epoch ms: past it the run is killed with reason CodexTimeout. */
  deadline: number;
  /** Unique per job attempt; inherited by every process of the run. */
  marker: string;
  killGraceMs?: number;
  /** Where codex runs: here (default) or in the agent container (agent-launcher.ts). */
  launcher?: AgentLauncher;
  /** Model request / stream retries inside codex. */
  requestMaxRetries?: number;
  streamMaxRetries?: number;
  /** Abort = POST /kill: the run ends with the signal's reason (Killed). */
  signal?: AbortSignal;
  onEvent?: (event: CodexEvent) => void;
  onLogLine?: (line: string) => void;
  /**
   * A thread of an earlier run in the same codexHome to resume (`codex exec resume`): the model
   * gets that run's whole conversation, then `prompt` (a repair turn, a follow-up).
   */
  resume?: string;
}

export interface CodexRunResult {
  exitCode: number | null;
  finalMessage: string | null;
  durationMs: number;
  codexVersion: string | null;
  usage: Record<string, unknown> | null;
  /** The run's thread (codex's `thread.started`): what a later run resumes. */
  threadId: string | null;
}

function codexArgs(opts: CodexRunOptions, files: { lastMessage: string; schema: string; catalog: string }): string[] {
  const provider = [
    'name="pagewright"',
    `base_url=${JSON.stringify(opts.llmUrl)}`,
    `env_key="${KEY_ENV}"`,
    'wire_api="responses"',
    `request_max_retries=${opts.requestMaxRetries ?? 4}`,
    `stream_max_retries=${opts.streamMaxRetries ?? 5}`,
    'stream_idle_timeout_ms=300000',
  ].join(', ');
  // not --ephemeral: the thread's rollout (CODEX_HOME/sessions/) is what a repair turn resumes.
  // It holds the conversation and tool outputs, never the key (that is in codex's environment,
  // and the agent's shell gets none of it: shell_environment_policy below, passed again on
  // every resume since codex does not keep it). `resume` takes every flag but --cd, which
  // must come before it (0.169.0 refuses it after)
  return [
    'exec',
    '--cd',
    opts.siteDir,
    ...(opts.resume ? ['resume'] : []),
    '--json',
    '--skip-git-repo-check',
    '--ignore-user-config',
    // the pod is the sandbox; bubblewrap cannot create namespaces in a hardened container
    '--dangerously-bypass-approvals-and-sandbox',
    // nothing but the model: each of these reaches the internet (notes/codex-cli.md), which a
    // pod's NetworkPolicy refuses; analytics waits out two DNS timeouts (5 s) at every exit
    '--disable',
    'plugins',
    '--disable',
    'remote_plugin',
    '--disable',
    'apps',
    '--disable',
    'in_app_updates',
    '-c',
    'analytics.enabled=false',
    '--disable',
    'unbounded_connection_retries',
    // no hosted tools: only function and custom tools reach the model (see the header)
    '-c',
    'web_search="disabled"',
    '--disable',
    'multi_agent',
    '-c',
    `model_catalog_json=${JSON.stringify(files.catalog)}`,
    '--output-last-message',
    files.lastMessage,
    '--output-schema',
    files.schema,
    '--model',
    opts.model,
    '-c',
    'model_provider="pagewright"',
    '-c',
    `model_providers.pagewright={ ${provider} }`,
    '-c',
    // JSON string escapes are valid TOML basic-string escapes
    `developer_instructions=${JSON.stringify(opts.instructions)}`,
    '-c',
    'shell_environment_policy.inherit="core"',
    '-c',
    `shell_environment_policy.set={ ${PROCESS_MARKER_ENV}=${JSON.stringify(opts.marker)} }`,
    '--',
    // by its id, never --last (which starts a new thread, exit 0, when it finds none)
    ...(opts.resume ? [opts.resume] : []),
    opts.prompt,
  ];
}

/**
 * Codex's environment: a few pass-through variables, its home, key and marker. HOME is a
 * per-run directory: codex runs every command with `bash -lc`, and the host user's dotfiles
 * (slow or locking shell init, personal settings) have no business in a job; in a pod the
 * root filesystem is read-only and only the work dir is writable anyway.
 */
function codexEnv(opts: CodexRunOptions, parent: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(parent)) if (PASS_THROUGH.test(k) && v !== undefined) env[k] = v;
  return { ...env, HOME: agentHome(opts), CODEX_HOME: opts.codexHome, [KEY_ENV]: opts.llmKey, [PROCESS_MARKER_ENV]: opts.marker };
}

function agentHome(opts: CodexRunOptions): string {
  return join(opts.codexHome, 'home');
}

export async function runCodex(opts: CodexRunOptions): Promise<CodexRunResult> {
  opts.signal?.throwIfAborted();
  const started = Date.now();
  const files = {
    lastMessage: join(opts.codexHome, 'last-message.txt'),
    schema: join(opts.codexHome, 'output-schema.json'),
    catalog: join(opts.codexHome, 'model-catalog.json'),
  };
  await writeFile(files.schema, JSON.stringify(FINAL_MESSAGE_SCHEMA));
  await writeFile(files.lastMessage, '');
  await mkdir(agentHome(opts), { recursive: true });
  await writeFile(files.catalog, await modelCatalogWithoutSearch(opts));
  // the agent may run as another uid of the same group (agent container): its files must be its to write
  await Promise.all([files.lastMessage, agentHome(opts), opts.codexHome].map((f) => chmod(f, f === files.lastMessage ? 0o660 : 0o2770)));
  const version = codexVersion(opts.binary).catch(() => null);

  const errors: string[] = [];
  let lastAgentMessage: string | null = null;
  let usage: Record<string, unknown> | null = null;
  let threadId: string | null = null;
  const stderrTail: string[] = [];
  const onLine = (stream: 'stdout' | 'stderr', line: string) => {
    opts.onLogLine?.(line);
    if (stream === 'stderr') {
      stderrTail.push(line);
      if (stderrTail.length > 20) stderrTail.shift();
      return;
    }
    const event = parseEventLine(line);
    if (!event) return;
    opts.onEvent?.(event);
    const err = eventError(event);
    if (err) errors.push(err);
    lastAgentMessage = agentMessage(event) ?? lastAgentMessage;
    if (event.type === 'turn.completed') usage = (event.usage as Record<string, unknown>) ?? null;
    if (event.type === 'thread.started' && typeof event.thread_id === 'string') threadId ??= event.thread_id;
  };
  const launcher = opts.launcher ?? new LocalLauncher();
  const run = await launcher.start(
    { command: opts.binary, args: codexArgs(opts, files), env: codexEnv(opts), cwd: opts.siteDir, marker: opts.marker },
    onLine,
  );

  const stop = stopper<JobFailure>(run, opts.killGraceMs ?? 3000);
  const onAbort = () => void stop(abortFailure(opts.signal?.reason));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  // a /kill that came while the run was being prepared (the catalog, the launch) was not heard yet
  if (opts.signal?.aborted) onAbort();
  const timer = setTimeout(
    () =>
      void stop(
        new PagewrightError('CodexTimeout', `codex did not finish before the job's deadline (${new Date(opts.deadline).toISOString()})`),
      ),
    Math.max(0, opts.deadline - Date.now()),
  );
  let exit: AgentExit;
  try {
    exit = await run.exited;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  const exitCode = exit.code;
  const stopped = stop.stoppedBy();
  // even after a clean exit, nothing the agent started may outlive the run
  await run.killAll();
  if (stopped) throw stopped;
  // a pod limit the run hit (pids, the work dir's size) is why it failed, whatever codex says
  const limit = await limitFailure(exit, opts.codexHome);
  if (limit) throw limit;
  if (errors.length > 0 && (exitCode !== 0 || lastAgentMessage === null)) {
    const { reason, message } = classifyCodexFailure(errors);
    throw new PagewrightError(reason, message);
  }
  if (exitCode !== 0) {
    throw new PagewrightError('CodexFailed', `codex exited with code ${exitCode}: ${stderrTail.slice(-3).join(' | ') || 'no output'}`);
  }
  const fromFile = (await readFile(files.lastMessage, 'utf8').catch(() => '')).trim();
  return {
    exitCode,
    finalMessage: fromFile || lastAgentMessage,
    durationMs: Date.now() - started,
    codexVersion: await version,
    usage,
    threadId,
  };
}

/** Why the caller aborted (its signal's reason: Killed, DeadlineExceeded, ...), else Killed. */
function abortFailure(value: unknown): JobFailure {
  return isJobFailure(value) ? value : new PagewrightError('Killed', value instanceof Error ? value.message : 'codex run aborted');
}

/**
 * codex's bundled model catalog with `supports_search_tool` off for every model: the only way
 * 0.169.0 offers to keep its client-side `tool_search` tool out of the request. Read from the
 * binary itself, so it is always the catalog of the codex that runs.
 */
async function modelCatalogWithoutSearch(opts: CodexRunOptions): Promise<string> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(opts.binary, ['debug', 'models', '--bundled'], {
      timeout: 15_000,
      maxBuffer: 16 * 1024 * 1024,
      env: codexEnv(opts),
    }));
  } catch (err) {
    throw new PagewrightError('CodexFailed', `codex could not list its bundled models: ${(err as Error).message}`);
  }
  let models: unknown;
  try {
    models = (JSON.parse(stdout) as { models?: unknown }).models;
  } catch {
    // judged below
  }
  if (!Array.isArray(models))
    throw new PagewrightError('CodexFailed', 'codex listed its bundled models in a shape this runner does not know');
  return JSON.stringify({ models: models.map((model: Record<string, unknown>) => ({ ...model, supports_search_tool: false })) });
}

/** `codex --version` -> "0.169.0" */
async function codexVersion(binary: string): Promise<string> {
  const { stdout } = await promisify(execFile)(binary, ['--version'], { timeout: 15_000 });
  return stdout.trim().replace(/^codex-cli\s+/, '');
}
