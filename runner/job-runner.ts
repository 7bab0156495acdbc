/**
 * One job, phase by phase (DESIGN.md "runner"): preflight, fetch, unpack, patch instructions,
 * codex, pack, upload; then the result goes to the manager. Every failure ends as a
 * PagewrightError whose code, a FailureReason, lands as `reason` in /status, the manifest and
 * the callback. run() never throws.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type JobFailure, PagewrightError, toJobFailure } from '../common/errors.js';
import { runMarker } from '../common/process-marker.js';
import type { Logger } from '../common/logger.js';
import {
  CheckSettings,
  type DiffSummary,
  type FileChange,
  type JobManifest,
  type JobResult,
  MAX_RESULT_FILES,
  MAX_RESULT_FINDINGS,
  type ManifestCheck,
  type RunnerJob,
  type WorkPhase,
} from '../common/schemas.js';
import type { StorageClient } from '../common/storage-client.js';
import { type UnpackLimits, extractPaths, packArchive, unpackArchive } from './archive.js';
import { type AgentLauncher, LocalLauncher } from './agent-launcher.js';
import { runSiteCommand } from './checks/command.js';
import { failedChecks, repairPrompt } from './checks/repair.js';
import { checkSite } from './checks/site-checks.js';
import { runCodex } from './codex.js';
import { installInstructions, isCodexPath, stashCodexEntries } from './codex-dir.js';
import { readOutputArchive } from './output-archive.js';
import { DEFAULT_MAX_DIFF_BYTES, writeSiteDiff } from './diff.js';
import { type OutputModes, outputModes } from './file-modes.js';
import { checkOutputTree } from './output-check.js';
import { parseFinalMessage } from './final-message.js';
import type { ManagerClient } from './manager-client.js';
import { RunState } from './phases.js';
import { enforcePathRules, rulesForInstructions } from './path-rules.js';
import { preflightModel } from './preflight.js';
import { type KeptSession, MAX_SESSION_BYTES, installSession, keepSession } from './session.js';
import { fetchJobObject, fetchSiteArtifact, uploadJobFile } from './transfers.js';
import { type Tree, diffTrees, hashFile, snapshotTree } from './tree.js';

export interface JobRunnerOptions {
  job: RunnerJob;
  /** The site and codex's home: shared with the agent (in a pod, the agent container mounts it too). */
  workDir: string;
  /** The runner's own files (the input, the .codex/ stash, the output, the manifest): never the agent's. */
  privateDir?: string;
  /** Where codex runs; default: a child process here. */
  launcher?: AgentLauncher;
  /** The agent runs as another uid of the runner's group (a pod): give the site to the group (archive.ts, file-modes.ts). */
  shareSiteWithGroup?: boolean;
  /** The runner's own credential: never written into the job log. */
  runnerToken?: string;
  storage: StorageClient;
  /** null when nobody listens (a bare `node runner/main.js` without MANAGER_URL). */
  manager: ManagerClient | null;
  codex: CodexSettings;
  limits: UnpackLimits;
  /** diff.patch is cut here (runner/diff.ts); default DEFAULT_MAX_DIFF_BYTES. */
  maxDiffBytes?: number;
  logger: Logger;
  /** The job log file that is uploaded as jobs/{id}/log. */
  logPath: string;
  /** How long the result callback may keep retrying after the job ends. */
  callbackTimeoutMs: number;
  transferRetryDelayMs?: number;
}

interface CodexSettings {
  binary: string;
  /** Default model when the job names none. */
  model: string;
  llmUrl: string;
  llmKey: string;
  instructionsPath: string;
  killGraceMs: number;
  requestMaxRetries?: number;
  streamMaxRetries?: number;
}

/** Time kept back from the codex deadline for packing, upload and the callback. */
function reserveMs(timeoutSeconds: number): number {
  return Math.min(120_000, Math.max(15_000, timeoutSeconds * 100));
}

export class JobRunner {
  readonly #o: JobRunnerOptions;
  readonly #state: RunState;
  readonly #abort = new AbortController();
  readonly #paths;
  #deadline = 0;
  /** The completed attempt's diff.patch in numbers; null when none was stored (#writeDiff). */
  #diffSummary: DiffSummary | null = null;
  /** The packed output's checks (empty: none ran, or the job failed before). */
  #checks: ManifestCheck[] = [];
  /** Agent turns so far: the first, then repair turns. */
  #turns = 1;
  /** The codex session stored as session.jsonl (what a follow-up resumes); null: none. */
  #session: KeptSession | null = null;

  constructor(opts: JobRunnerOptions) {
    this.#o = opts;
    this.#state = new RunState(opts.job);
    const own = opts.privateDir ?? opts.workDir;
    this.#paths = {
      input: join(own, 'input.tar.gz'),
      site: join(opts.workDir, 'site'),
      codexStash: join(own, 'codex-stash.tar'),
      output: join(own, 'output.tar.gz'),
      manifest: join(own, 'manifest.json'),
      diffBase: join(own, 'diff-base'),
      diff: join(own, 'diff.patch'),
      codexHome: join(opts.workDir, 'codex-home'),
      sessionIn: join(own, 'session-in.jsonl'),
      sessionOut: join(own, 'session.jsonl'),
    };
  }

  status() {
    return this.#state.snapshot();
  }

  /**
   * Ends the job with `failure` (POST /kill: Killed; SIGTERM: PodTerminated). False when the job
   * already ended; a second kill keeps the first failure.
   */
  kill(failure: JobFailure = new PagewrightError('Killed', 'job killed through POST /kill')): boolean {
    if (this.#state.finished) return false;
    if (!this.#abort.signal.aborted) this.#abort.abort(failure);
    return true;
  }

  async run(): Promise<JobResult> {
    const { job, logger } = this.#o;
    const startedAt = Date.now();
    this.#deadline = startedAt + job.timeout_seconds * 1000;
    const deadlineTimer = setTimeout(
      () => this.#abort.abort(new PagewrightError('DeadlineExceeded', `job exceeded its ${job.timeout_seconds}s deadline`)),
      this.#deadline - startedAt,
    );
    let baseVersion: string | null = job.base_version ?? null;
    let files: string[] = [];
    let manifest: Omit<JobManifest, 'result'> | null = null;
    try {
      await mkdir(this.#o.workDir, { recursive: true });
      await this.#phase('preflight', () =>
        preflightModel({ baseURL: this.#o.codex.llmUrl, apiKey: this.#o.codex.llmKey, model: this.#model(), signal: this.#abort.signal }),
      );
      const fetched = await this.#phase('fetching_artifact', () => this.#fetchInput());
      baseVersion = fetched.version;
      logger.info('artifact fetched', { version: fetched.version, size: fetched.size });

      const shared = this.#o.shareSiteWithGroup === true;
      const { before, inputModes } = await this.#phase('unpacking', async () => {
        const unpacked = await unpackArchive(this.#paths.input, this.#paths.site, this.#o.limits, { shareWithGroup: shared });
        logger.info('artifact unpacked', { entries: unpacked.entries, bytes: unpacked.bytes });
        return { before: await snapshotTree(this.#paths.site, { exclude: isCodexPath }), inputModes: unpacked.modes };
      });

      const { stashed, instructions } = await this.#phase('patching_instructions', async () => {
        const text = (await readFile(this.#o.codex.instructionsPath, 'utf8')) + rulesForInstructions(job.path_rules);
        // the input stays (out of the agent's reach) until the diff has read the base side from it
        const hasCodexDir = await stashCodexEntries(this.#paths.input, this.#paths.codexStash);
        await installInstructions(this.#paths.site, text);
        if (job.follow_up) {
          await mkdir(this.#paths.codexHome, { recursive: true });
          await installSession(this.#paths.sessionIn, this.#paths.codexHome, job.follow_up.thread_id);
        }
        return { stashed: hasCodexDir, instructions: text };
      });

      const checkSettings = job.checks ?? CheckSettings.parse({});
      // a follow-up resumes the thread it follows: codex keeps that thread's instructions (a new
      // developer_instructions has no effect on resume), so the site's rules, which may have
      // changed since, come with the prompt
      let codex = await this.#phase('executing_codex', () =>
        job.follow_up
          ? this.#executeCodex(instructions, job.prompt + rulesForInstructions(job.path_rules), job.follow_up.thread_id)
          : this.#executeCodex(instructions, job.prompt),
      );
      let inspected = await this.#phase('checking', () => this.#inspect(before, before, inputModes, shared, checkSettings));
      // a repair turn: the agent's own thread, resumed with what its change broke, within the
      // job's deadline and budget (the gateway's ledger is per attempt)
      while (failedChecks(inspected.checks).length > 0 && this.#turns <= checkSettings.repair_turns) {
        if (!codex.threadId || !this.#timeForAnotherTurn()) {
          logger.warn('checks failed and no repair turn can run', { thread: codex.threadId, turns: this.#turns });
          break;
        }
        const thread = codex.threadId;
        logger.info('checks failed: resuming the agent for a repair turn', { turn: this.#turns + 1, thread });
        codex = await this.#phase('executing_codex', () => this.#executeCodex(instructions, repairPrompt(inspected.checks), thread));
        this.#turns++;
        inspected = await this.#phase('checking', () => this.#inspect(before, inspected.after, inputModes, shared, checkSettings));
      }

      const packed = await this.#phase('packing_result', async () => {
        const { after, modes, changes } = inspected;
        // the input's .codex/ from the stash, as it was, then the site without its .codex/. The
        // stash goes first: node-tar 7.5 never finishes a create() whose "@archive" comes after
        // file entries (pinned in test/integration/runner.test.ts); a site path starting with "@"
        // must not read as one
        const entries = [...after.keys()].map((p) => (p.startsWith('@') ? `./${p}` : p));
        if (stashed) entries.unshift(`@${this.#paths.codexStash}`);
        const archive = await packArchive(this.#paths.site, entries, this.#paths.output, (path) => modes.of(path));
        // what goes out is what was checked: the archive itself, read back (and hashed for the manifest)
        const full = await readOutputArchive(this.#paths.output, this.#o.limits);
        const diff = await this.#writeDiff(changes, inputModes, after, modes);
        return { changes, full, archive, diff };
      });
      this.#checks = inspected.checks;
      files = packed.changes.map((c) => c.path);
      this.#state.filesChanged = files.length;
      this.#state.summary = codex.summary;
      this.#state.outputVersion = packed.archive.sha256;
      logger.info('result packed', { files_changed: files.length, output_version: packed.archive.sha256, size: packed.archive.size });
      manifest = {
        manifest_version: 1,
        job_id: job.job_id,
        site_id: job.site_id,
        attempt: job.attempt,
        changes: packed.changes,
        files: [...packed.full].filter(([, e]) => e.type === 'file').map(([path, e]) => ({ path, sha256: e.sha256, size: e.size })),
        output_size: packed.archive.size,
        codex_version: codex.version,
        model: this.#model(),
        ...(inspected.checks.length > 0 ? { checks: inspected.checks } : {}),
      };

      await this.#phase('uploading', async () => {
        await uploadJobFile(
          this.#o.storage,
          job.job_id,
          'output.tar.gz',
          this.#paths.output,
          { sha256: packed.archive.sha256, size: packed.archive.size },
          this.#transfer(),
        );
        if (packed.diff) await this.#uploadDiff(packed.diff);
        if (codex.threadId) await this.#uploadSession(codex.threadId);
        if (this.#session)
          manifest = {
            ...manifest!,
            session: { thread_id: this.#session.threadId, sha256: this.#session.sha256, size: this.#session.size },
          };
        await this.#uploadManifest(manifest!, this.#result('completed', baseVersion, files, startedAt));
      });
      this.#state.finish('completed');
      logger.info('job completed', { files_changed: files.length, durations_ms: this.#state.durations });
    } catch (err) {
      const failure = this.#abort.signal.aborted ? toJobFailure(this.#abort.signal.reason) : toJobFailure(err);
      this.#state.error = failure.message;
      this.#state.reason = failure.code;
      this.#state.finish('failed');
      logger.error('job failed', { reason: failure.code, error: failure.message, phase_durations_ms: this.#state.durations });
      // best effort: a manager that misses the callback can still read why from storage
      const failedManifest = manifest ?? {
        manifest_version: 1 as const,
        job_id: job.job_id,
        site_id: job.site_id,
        attempt: job.attempt,
        changes: [],
        files: [],
        output_size: null,
        codex_version: null,
        model: this.#model(),
      };
      await this.#uploadManifest(failedManifest, this.#result('failed', baseVersion, files, startedAt)).catch((e: unknown) =>
        logger.warn('could not store the failure manifest', { error: String(e) }),
      );
    } finally {
      clearTimeout(deadlineTimer);
      await rm(this.#paths.input, { force: true }).catch(() => {});
    }
    const result = this.#result(this.#state.phase === 'completed' ? 'completed' : 'failed', baseVersion, files, startedAt);
    await this.#uploadLog();
    await this.#report(result);
    return result;
  }

  #model(): string {
    return this.#o.job.model ?? this.#o.codex.model;
  }

  #transfer() {
    return {
      deadline: this.#deadline,
      signal: this.#abort.signal,
      logger: this.#o.logger,
      ...(this.#o.transferRetryDelayMs !== undefined ? { minRetryDelayMs: this.#o.transferRetryDelayMs } : {}),
    };
  }

  async #phase<T>(phase: WorkPhase, fn: () => Promise<T>): Promise<T> {
    this.#abort.signal.throwIfAborted();
    this.#state.enter(phase);
    this.#o.logger.info('phase started', { phase });
    this.#o.manager?.sendProgress({ job_id: this.#o.job.job_id, attempt: this.#o.job.attempt, phase, at: new Date().toISOString() });
    const value = await fn();
    this.#abort.signal.throwIfAborted();
    return value;
  }

  /**
   * The agent has stopped, and with it all it started: the tree holds still. Anything a later
   * unpack would refuse, or that is unsafe to serve, fails here, naming the first offending
   * path; so does a change the site's path rules refuse (never uploaded). Then the base side of
   * every changed file is extracted from the input (the diff and the checks read it) and the
   * checks run.
   */
  async #inspect(before: Tree, previous: Tree, inputModes: ReadonlyMap<string, number>, shared: boolean, settings: CheckSettings) {
    const { job, logger } = this.#o;
    await checkOutputTree(this.#paths.site, this.#o.limits, { exclude: isCodexPath });
    const after = await snapshotTree(this.#paths.site, { exclude: isCodexPath, previous });
    // the input's modes where the agent left them, ordinary ones for what it created
    const modes = outputModes(inputModes, before, after, shared);
    const changes = diffTrees(before, after, modes.changed);
    enforcePathRules(changes, (path) => after.get(path)?.size ?? 0, job.path_rules);
    await rm(this.#paths.diffBase, { recursive: true, force: true });
    await rm(`${this.#paths.diffBase}.links`, { recursive: true, force: true });
    await extractPaths(this.#paths.input, this.#paths.diffBase, new Set(changes.map((c) => c.path).filter((p) => before.has(p))));
    const started = Date.now();
    const checks = await checkSite({
      base: before,
      output: after,
      changes,
      outputDir: this.#paths.site,
      readBase: (path) => readFile(join(this.#paths.diffBase, path), 'utf8'),
      settings,
    });
    if (settings.command) checks.push(await this.#siteCommand(settings.command));
    if (checks.length > 0)
      logger.info('checks ran', {
        checks: Object.fromEntries(checks.map((c) => [c.name, { passed: c.passed, introduced: c.introduced, preexisting: c.preexisting }])),
        duration_ms: Date.now() - started,
      });
    return { after, modes, changes, checks };
  }

  /** The site's check command, in the agent's place, within its own deadline and the job's. */
  async #siteCommand(command: NonNullable<CheckSettings['command']>): Promise<ManifestCheck> {
    const { job, logger } = this.#o;
    const log = logger.child({ source: 'check-command' });
    const left = this.#deadline - reserveMs(job.timeout_seconds) - Date.now();
    logger.info('site command started', { run: command.run, timeout_seconds: command.timeout_seconds });
    const check = await runSiteCommand({
      run: command.run,
      timeoutMs: Math.max(1000, Math.min(command.timeout_seconds * 1000, left)),
      launcher: this.#o.launcher ?? new LocalLauncher(),
      siteDir: this.#paths.site,
      home: join(this.#paths.codexHome, 'home'),
      marker: runMarker(job.job_id, job.attempt, process.pid),
      killGraceMs: this.#o.codex.killGraceMs,
      signal: this.#abort.signal,
      onLine: (stream, line) => log.info(line, { stream }),
    });
    logger.info('site command ended', { passed: check.passed, finding: check.findings[0]?.code });
    return check;
  }

  /** Whether a repair turn has a minute of codex's deadline left to run in. */
  #timeForAnotherTurn(): boolean {
    return Date.now() + 60_000 < this.#deadline - reserveMs(this.#o.job.timeout_seconds);
  }

  async #executeCodex(
    instructions: string,
    prompt: string,
    resume?: string,
  ): Promise<{ summary: string; version: string | null; threadId: string | null }> {
    const { job, codex, logger } = this.#o;
    const codexLog = logger.child({ source: 'codex' });
    await mkdir(this.#paths.codexHome, { recursive: true });
    const { instructionsPath: _unused, ...settings } = codex;
    // the agent can read its own gateway credential (codex must send it) and print it: it is
    // useless once the attempt ends, but the job log is no place for it, nor for the runner's
    const secrets = [codex.llmKey, this.#o.runnerToken].filter((v): v is string => !!v && v.length >= 8);
    const redact = (line: string) => secrets.reduce((l, secret) => l.split(secret).join('[redacted]'), line);
    const run = await runCodex({
      ...settings,
      ...(this.#o.launcher ? { launcher: this.#o.launcher } : {}),
      model: this.#model(),
      siteDir: this.#paths.site,
      codexHome: this.#paths.codexHome,
      prompt,
      ...(resume ? { resume } : {}),
      instructions,
      deadline: Math.max(Date.now() + 1000, this.#deadline - reserveMs(job.timeout_seconds)),
      marker: runMarker(job.job_id, job.attempt, process.pid),
      signal: this.#abort.signal,
      onLogLine: (line: string) => codexLog.info(redact(line)),
    });
    const parsed = parseFinalMessage(run.finalMessage);
    logger.info('agent finished', { format: parsed.format, claimed_files: parsed.claimedFiles, duration_ms: run.durationMs });
    return { summary: parsed.summary, version: run.codexVersion ?? null, threadId: run.threadId };
  }

  #result(status: 'completed' | 'failed', baseVersion: string | null, files: string[], startedAt: number): JobResult {
    return {
      job_id: this.#o.job.job_id,
      attempt: this.#o.job.attempt,
      status,
      reason: status === 'failed' ? this.#state.reason : null,
      error: status === 'failed' ? (this.#state.error ?? '').slice(0, 4000) : null,
      files_changed: files.length,
      files: files.slice(0, MAX_RESULT_FILES),
      summary: this.#state.summary,
      base_version: baseVersion,
      output_version: status === 'completed' ? this.#state.outputVersion : null,
      started_at: new Date(startedAt).toISOString(),
      finished_at: new Date().toISOString(),
      phase_durations_ms: this.#state.durations,
      ...(status === 'completed' && this.#diffSummary ? { diff_summary: this.#diffSummary } : {}),
      ...(status === 'completed' && this.#checks.length > 0
        ? { checks: this.#checks.map((c) => ({ ...c, findings: c.findings.slice(0, MAX_RESULT_FINDINGS) })) }
        : {}),
      turns: this.#turns,
      ...(status === 'completed' && this.#session ? { thread_id: this.#session.threadId } : {}),
    };
  }

  /**
   * The input: the site's artifact (its current version, or base_version); for a follow-up, the
   * output of the job it follows, and that job's codex session (installed once the site is).
   */
  async #fetchInput(): Promise<{ version: string; size: number }> {
    const { job } = this.#o;
    if (!job.follow_up) return fetchSiteArtifact(this.#o.storage, job.site_id, job.base_version, this.#paths.input, this.#transfer());
    const { job_id: source, version } = job.follow_up;
    // an archive within the unpack limits is smaller than this; unpack checks the real limits
    const maxArchive = this.#o.limits.maxBytes + this.#o.limits.maxEntries * 1024 + 1024 * 1024;
    const fetched = await fetchJobObject(
      this.#o.storage,
      source,
      'output.tar.gz',
      this.#paths.input,
      { version, maxBytes: maxArchive },
      this.#transfer(),
    );
    const session = await fetchJobObject(
      this.#o.storage,
      source,
      'session.jsonl',
      this.#paths.sessionIn,
      { maxBytes: MAX_SESSION_BYTES },
      this.#transfer(),
    );
    this.#o.logger.info('follow-up: output and session of the job it follows fetched', { job: source, session_bytes: session.size });
    return fetched;
  }

  /**
   * The thread's rollout, redacted, as session.jsonl: what a follow-up resumes. One that cannot
   * be kept or stored does not fail a good job (a follow-up of it is refused, and says why).
   */
  async #uploadSession(threadId: string): Promise<void> {
    const { job, logger, codex } = this.#o;
    try {
      const kept = await keepSession({
        codexHome: this.#paths.codexHome,
        threadId,
        dest: this.#paths.sessionOut,
        secrets: [codex.llmKey, this.#o.runnerToken].filter((v): v is string => !!v),
      });
      if ('skipped' in kept) {
        logger.warn('the codex session is not kept: a follow-up of this job is not possible', { reason: kept.skipped });
        return;
      }
      await uploadJobFile(this.#o.storage, job.job_id, 'session.jsonl', this.#paths.sessionOut, kept, this.#transfer());
      this.#session = kept;
      logger.info('codex session kept', { thread: threadId, size: kept.size });
    } catch (err) {
      this.#abort.signal.throwIfAborted();
      logger.warn('the codex session could not be stored: a follow-up of this job is not possible', { error: String(err) });
    }
  }

  /**
   * diff.patch (runner/diff.ts): the base side is the input archive's changed files and links,
   * extracted into the private dir by #inspect; the output side is the site as packed, with the modes the
   * output carries. A diff that cannot be written does not fail a good job: the job succeeds
   * without diffSummary (and without diff.patch), and the log says why.
   */
  async #writeDiff(
    changes: FileChange[],
    inputModes: ReadonlyMap<string, number>,
    after: Tree,
    modes: OutputModes,
  ): Promise<{ summary: DiffSummary; sha256: string; size: number } | null> {
    const started = Date.now();
    try {
      // the base side was extracted by #inspect
      const paths = changes.map((c) => c.path);
      const summary = await writeSiteDiff(this.#paths.diffBase, this.#paths.site, this.#paths.diff, {
        maxBytes: this.#o.maxDiffBytes ?? DEFAULT_MAX_DIFF_BYTES,
        exclude: isCodexPath,
        paths,
        baseMode: (p) => inputModes.get(p),
        outputMode: (p) => (after.has(p) ? modes.of(p) : undefined),
      });
      const { size } = await stat(this.#paths.diff);
      this.#o.logger.info('diff written', { ...summary, size, duration_ms: Date.now() - started });
      return { summary, size, sha256: await hashFile(this.#paths.diff, size) };
    } catch (err) {
      this.#o.logger.warn('diff.patch could not be written: the job goes on without it', { error: String(err) });
      return null;
    } finally {
      await rm(this.#paths.diffBase, { recursive: true, force: true }).catch(() => {});
      await rm(`${this.#paths.diffBase}.links`, { recursive: true, force: true }).catch(() => {});
    }
  }

  /** Stored before the manifest, so a manifest with a diff_summary always has its diff.patch. */
  async #uploadDiff(diff: { summary: DiffSummary; sha256: string; size: number }): Promise<void> {
    try {
      await uploadJobFile(this.#o.storage, this.#o.job.job_id, 'diff.patch', this.#paths.diff, diff, this.#transfer());
      this.#diffSummary = diff.summary;
    } catch (err) {
      this.#abort.signal.throwIfAborted();
      this.#o.logger.warn('diff.patch could not be stored: the job goes on without it', { error: String(err) });
    }
  }

  async #uploadManifest(manifest: Omit<JobManifest, 'result'>, result: JobResult): Promise<void> {
    const body = JSON.stringify({ ...manifest, result } satisfies JobManifest);
    await writeFile(this.#paths.manifest, body);
    const sha256 = createHash('sha256').update(body).digest('hex');
    await uploadJobFile(
      this.#o.storage,
      this.#o.job.job_id,
      'manifest.json',
      this.#paths.manifest,
      { sha256, size: Buffer.byteLength(body) },
      {
        ...this.#transfer(),
        // the failure manifest is written after an abort too: give it its own short window
        signal: AbortSignal.timeout(30_000),
        deadline: Math.max(this.#deadline, Date.now() + 30_000),
      },
    );
  }

  async #uploadLog(): Promise<void> {
    try {
      const { size } = await stat(this.#o.logPath);
      await uploadJobFile(
        this.#o.storage,
        this.#o.job.job_id,
        'log',
        this.#o.logPath,
        { sha256: await hashFile(this.#o.logPath), size },
        {
          ...this.#transfer(),
          signal: AbortSignal.timeout(30_000),
          deadline: Date.now() + 30_000,
          retries: 3,
        },
      );
    } catch (err) {
      this.#o.logger.warn('could not store the job log', { error: String(err) });
    }
  }

  async #report(result: JobResult): Promise<void> {
    const manager = this.#o.manager;
    if (!manager) return;
    await manager.flushProgress();
    manager.sendProgress({ job_id: result.job_id, attempt: result.attempt, phase: this.#state.phase, at: result.finished_at });
    await manager.flushProgress();
    try {
      await manager.sendResult(result, Date.now() + this.#o.callbackTimeoutMs);
    } catch (err) {
      this.#o.logger.error('result callback was never acknowledged; the manager will recover it from the manifest', {
        error: String(err),
      });
    }
  }
}
