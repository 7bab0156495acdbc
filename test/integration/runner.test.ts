/**
 * The runner as a process, as in a pod: real storage service, real Codex CLI, scripted model.
 */
import { randomBytes } from 'node:crypto';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { x as extract, list } from 'tar';
import { request } from 'undici';
import { findMarkedProcesses } from '../../common/process-marker.js';
import { JobManifest, JobResult, type RunnerJobInput, type RunnerPhase, type RunnerStatus, WORK_PHASES } from '../../common/schemas.js';
import { packDirectory } from '../../runner/archive.js';
import { type CallbackRecorder, startCallbackRecorder } from '../support/callback-recorder.js';
import { startGateProxy } from '../support/gate-proxy.js';
import { demoScript } from '../../cli/demo-script.js';
import { DEFAULT_MODEL } from '../../common/models.js';
import { type ModelServer, type ModelServerOptions, type ModelTurn, type TurnContext, startModelServer } from '../../cli/model-server.js';
import { getFreePort } from '../support/ports.js';
import { pidsWithCmdline, waitFor } from '../support/processes.js';
import { RUNNER_INSTRUCTIONS, type RunnerUnderTest, startRunner } from '../support/runner-process.js';
import { EXAMPLE_SITE, REPO_ROOT } from '../support/sites.js';
import { type TestStorage, startTestStorage } from '../support/storage.js';
import { type ForgedEntry, forgeTarGz } from '../support/tar-forge.js';

const PROMPT = 'Add a notice that the bakery is closed from December 24 to 26';

describe('runner (process, real storage and Codex CLI)', function () {
  this.timeout(90_000);
  let storage: TestStorage;
  let model: ModelServer | undefined;
  let manager: CallbackRecorder | undefined;
  let runner: RunnerUnderTest | undefined;
  let scratch: string;
  let baseVersion: string;
  let n = 0;

  before(async () => {
    storage = await startTestStorage({ maxArtifactBytes: 256 * 1024 * 1024 });
    scratch = await mkdtemp(join(tmpdir(), 'pw-runner-test-'));
    await packDirectory(EXAMPLE_SITE, join(scratch, 'site.tar.gz'));
    baseVersion = (await storage.admin.putSiteArtifact('bakery', await readFile(join(scratch, 'site.tar.gz')))).version;
  });
  after(async () => {
    await storage.close();
    await rm(scratch, { recursive: true, force: true });
  });
  afterEach(async () => {
    if (runner && runner.proc.exitCode === null) runner.proc.kill('SIGKILL');
    if (this.ctx.currentTest?.state === 'failed' && runner)
      process.stderr.write(`--- runner stderr ---\n${runner.stderr().slice(-4000)}\n`);
    runner = undefined;
    await model?.close();
    await manager?.close();
    model = undefined;
    manager = undefined;
  });

  async function launch(
    opts: {
      job?: Partial<RunnerJobInput>;
      model?: ModelServerOptions;
      llmUrl?: string;
      llmKey?: string;
      storageUrl?: string;
      env?: Record<string, string>;
      instructionsPath?: string;
      respond?: Parameters<typeof startCallbackRecorder>[0];
      /** The token's follows claim (a follow-up's: the job whose output and session it reads). */
      follows?: string;
    } = {},
  ) {
    model = await startModelServer(opts.model ?? { script: demoScript });
    manager = await startCallbackRecorder(opts.respond);
    const job: RunnerJobInput = {
      job_id: `job-${process.pid}-${++n}`,
      site_id: 'bakery',
      prompt: PROMPT,
      attempt: 1,
      timeout_seconds: 120,
      ...opts.job,
    };
    const token = await storage.tokens.issue({
      jobId: job.job_id,
      siteId: job.site_id,
      attempt: job.attempt ?? 1,
      ttlSeconds: 600,
      ...(opts.follows ? { follows: opts.follows } : {}),
    });
    runner = await startRunner({
      job,
      token,
      storageUrl: opts.storageUrl ?? storage.url,
      llmUrl: opts.llmUrl ?? model.url,
      llmKey: opts.llmKey ?? model.key,
      managerUrl: manager.url,
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.instructionsPath ? { instructionsPath: opts.instructionsPath } : {}),
    });
    return { job, token, runner, model, manager };
  }

  async function finalResult(): Promise<JobResult> {
    return JobResult.parse(await manager!.acknowledgedResult());
  }

  it('runs a job end to end: edited artifact, manifest, log, callback, exit 0', async () => {
    const { job, token } = await launch();
    const result = await finalResult();
    expect(await runner!.exited).to.equal(0);
    expect(result).to.include({
      job_id: job.job_id,
      attempt: 1,
      status: 'completed',
      reason: null,
      files_changed: 1,
      base_version: baseVersion,
    });
    expect(result.files).to.deep.equal(['index.html']);
    expect(result.summary).to.match(/Added a note to index.html/);
    for (const phase of WORK_PHASES) {
      expect(result.phase_durations_ms, phase).to.have.property(phase).that.is.a('number');
    }
    // the callback carried the job token
    expect(manager!.results()[0]!.authorization).to.equal(`Bearer ${token}`);

    // the output artifact in storage really contains the edit, and .codex/ exactly as shipped
    const jobObjects = await storage.admin.getJob(job.job_id);
    expect(jobObjects.objects['output.tar.gz']!.version).to.equal(result.output_version);
    const out = await mkdtemp(join(scratch, 'out-'));
    await writeFile(
      join(out, 'o.tar.gz'),
      Buffer.concat(await (await storage.admin.getJobObject(job.job_id, 'output.tar.gz')).body.toArray()),
    );
    await extract({ file: join(out, 'o.tar.gz'), cwd: out });
    expect(await readFile(join(out, 'index.html'), 'utf8')).to.contain(`<aside class="pagewright-note" role="note">${PROMPT}</aside>`);
    expect(await readFile(join(out, '.codex/instructions.md'), 'utf8')).to.equal(
      await readFile(join(EXAMPLE_SITE, '.codex/instructions.md'), 'utf8'),
    );
    const { stdout: diff } = await promisify(execFile)('diff', ['-r', EXAMPLE_SITE, out]).catch((e: { stdout: string }) => e);
    expect(diff.split('\n').filter((l) => l.startsWith('Only in') && !l.includes('o.tar.gz'))).to.deep.equal([]);

    const manifest = JobManifest.parse(JSON.parse(await (await storage.admin.getJobObject(job.job_id, 'manifest.json')).body.text()));
    expect(manifest.changes).to.deep.equal([{ path: 'index.html', change: 'modified' }]);
    expect(manifest.result.status).to.equal('completed');
    expect(manifest.files.map((f) => f.path)).to.include.members(['index.html', 'about.html', '.codex/instructions.md']);
    expect(manifest.codex_version).to.match(/^0\.169\./);
    const log = await (await storage.admin.getJobObject(job.job_id, 'log')).body.text();
    expect(log).to.contain('"message":"job completed"');
    expect(log).to.contain('command_execution');

    // diff.patch: the edit as git shows it, applied by git onto the input it makes the output
    const summary = { filesAdded: 0, filesModified: 1, filesDeleted: 0, linesAdded: 1, linesRemoved: 0, truncated: false };
    expect(result.diff_summary).to.deep.equal(summary);
    expect(manifest.result.diff_summary).to.deep.equal(summary);
    const patch = await (await storage.admin.getJobObject(job.job_id, 'diff.patch')).body.text();
    expect(patch).to.match(
      /^diff --git a\/index\.html b\/index\.html\nindex [0-9a-f]{7}\.\.[0-9a-f]{7} 100644\n--- a\/index\.html\n\+\+\+ b\/index\.html\n@@ /,
    );
    const added = patch.split('\n').filter((l) => l.startsWith('+') && !l.startsWith('+++'));
    expect(added).to.have.length(1);
    expect(added[0]).to.contain(`<aside class="pagewright-note" role="note">${PROMPT}</aside>`);
    const applied = await mkdtemp(join(scratch, 'applied-'));
    await cp(EXAMPLE_SITE, applied, { recursive: true, verbatimSymlinks: true });
    await writeFile(join(scratch, `${job.job_id}.patch`), patch);
    await promisify(execFile)('git', ['apply', join(scratch, `${job.job_id}.patch`)], { cwd: applied });
    expect(await readFile(join(applied, 'index.html'), 'utf8')).to.equal(await readFile(join(out, 'index.html'), 'utf8'));
  });

  describe('checks and the repair turn', () => {
    const REPAIR = /The site's checks ran on your edit and failed/;
    const PAGE = '<!DOCTYPE html><html><head><title>New</title></head><body><a href="nowhere.html">home</a></body></html>';
    /** Turn 1 adds a page with a broken link; a repair turn (told so) points it at a page that exists. */
    const script = (ctx: TurnContext): ModelTurn => {
      if (REPAIR.test(ctx.prompt)) {
        if (ctx.toolOutputs.length === 1)
          return { kind: 'tools', calls: [{ type: 'shell', cmd: "sed -i 's/nowhere.html/index.html/' new.html" }] };
        return { kind: 'message', text: JSON.stringify({ summary: 'Added new.html, its link fixed', files_changed: ['new.html'] }) };
      }
      if (ctx.round === 0) return { kind: 'tools', calls: [{ type: 'shell', cmd: `printf '%s' '${PAGE}' > new.html` }] };
      return { kind: 'message', text: JSON.stringify({ summary: 'Added new.html', files_changed: ['new.html'] }) };
    };

    it('resumes the agent with what its change broke, in its own conversation, and packs the repaired output', async () => {
      const { job } = await launch({ model: { script } });
      const result = await finalResult();
      expect(result).to.include({ status: 'completed', turns: 2, summary: 'Added new.html, its link fixed' });
      expect(result.checks?.map((c) => [c.name, c.passed, c.introduced])).to.deep.equal([
        ['html', true, 0],
        ['links', true, 0],
      ]);
      // the repair request is the first turn's thread resumed: its prompt, its tool call, then the findings
      const requests = model!.responseRequests() as Array<{
        input: Array<{ type?: string; role?: string; content?: Array<{ text?: string }> }>;
      }>;
      const repair = requests.find((r) => REPAIR.test(JSON.stringify(r.input.at(-1))))!;
      expect(repair, 'a request with the repair prompt').to.not.equal(undefined);
      const text = JSON.stringify(repair.input);
      expect(text).to.contain(PROMPT).and.contain('printf').and.contain('Added new.html');
      const prompt = JSON.stringify(repair.input.at(-1));
      expect(prompt).to.contain('new.html:1').and.contain('nowhere.html');
      // the output packed is the repaired one; the manifest has the checks; the log says why a second turn ran
      const out = await mkdtemp(join(scratch, 'repaired-'));
      await writeFile(
        join(out, 'o.tar.gz'),
        Buffer.concat(await (await storage.admin.getJobObject(job.job_id, 'output.tar.gz')).body.toArray()),
      );
      await extract({ file: join(out, 'o.tar.gz'), cwd: out });
      expect(await readFile(join(out, 'new.html'), 'utf8')).to.contain('href="index.html"');
      const manifest = JobManifest.parse(JSON.parse(await (await storage.admin.getJobObject(job.job_id, 'manifest.json')).body.text()));
      expect(manifest.checks?.every((c) => c.passed)).to.equal(true);
      const log = await (await storage.admin.getJobObject(job.job_id, 'log')).body.text();
      expect(log).to.contain('checks failed: resuming the agent for a repair turn');
    });

    it('without repair turns, completes with the failed checks and their findings in the result and the manifest', async () => {
      const { job } = await launch({ model: { script }, job: { checks: { repair_turns: 0 } } });
      const result = await finalResult();
      expect(result).to.include({ status: 'completed', turns: 1 });
      const links = result.checks?.find((c) => c.name === 'links');
      expect(links).to.include({ passed: false, introduced: 1 });
      expect(links?.findings[0]).to.include({ path: 'new.html', line: 1, code: 'broken-link', introduced: true });
      expect(model!.responseRequests().some((r) => REPAIR.test(JSON.stringify(r)))).to.equal(false);
      const manifest = JobManifest.parse(JSON.parse(await (await storage.admin.getJobObject(job.job_id, 'manifest.json')).body.text()));
      expect(manifest.checks?.find((c) => c.name === 'links')?.findings[0]?.message).to.contain('"nowhere.html" does not resolve');
    });

    it("runs the site's command on a copy of the output, without the model key, and reports its failure with its output", async () => {
      const run = `env > ../env.txt; echo built > dist.txt; echo "build step 1"; echo "error: the build broke" >&2; exit 3`;
      const { job } = await launch({
        job: { checks: { html: false, links: false, repair_turns: 0, command: { run, timeout_seconds: 60 } } },
      });
      const result = await finalResult();
      expect(result).to.include({ status: 'completed', turns: 1 });
      const command = result.checks?.find((c) => c.name === 'command');
      expect(command).to.include({ passed: false, introduced: 1 });
      expect(command?.findings[0]).to.include({ code: 'command-failed', introduced: true });
      expect(command?.findings[0]?.message)
        .to.contain('exited with code 3')
        .and.contain('error: the build broke')
        .and.contain('build step 1');
      // what it wrote stayed in its copy; its environment had no key or token
      expect(result.files).to.deep.equal(['index.html']);
      const log = await (await storage.admin.getJobObject(job.job_id, 'log')).body.text();
      expect(log).to.contain('"source":"check-command"').and.contain('error: the build broke');
      const env = await readFile(join(runner!.workDir, 'env.txt'), 'utf8');
      expect(env).to.match(/^PATH=/m);
      expect(env).not.to.contain(model!.key);
      expect(env.split('\n').filter((l) => /PAGEWRIGHT|TOKEN|KEY/.test(l) && !l.startsWith('PAGEWRIGHT_PROCESS_MARKER='))).to.deep.equal(
        [],
      );
    });

    it('stops a site command that hangs, or floods its output, at its deadline: a failed check, not a stuck job', async () => {
      for (const run of ['setsid sleep 600 & sleep 600; wait', 'yes "flood flood flood"']) {
        const started = Date.now();
        await launch({ job: { checks: { html: false, links: false, repair_turns: 0, command: { run, timeout_seconds: 3 } } } });
        const result = await finalResult();
        expect(Date.now() - started, run).to.be.below(60_000);
        expect(result.status, run).to.equal('completed');
        const finding = result.checks?.find((c) => c.name === 'command')?.findings[0];
        expect(finding, run).to.include({ code: 'command-timeout' });
        expect(finding!.message.length).to.be.at.most(2000);
        expect(await runner!.exited).to.equal(0);
        // nothing it started outlives the job
        const { stdout } = await promisify(execFile)('ps', ['-eo', 'args']);
        expect(stdout.split('\n').filter((l) => l.startsWith('sleep 600') || l.startsWith('yes flood'))).to.deep.equal([]);
        await model?.close();
        await manager?.close();
      }
    });

    it('runs no check a job turned off', async () => {
      await launch({ model: { script }, job: { checks: { html: false, links: false } } });
      const result = await finalResult();
      expect(result).to.include({ status: 'completed', turns: 1 });
      expect(result).not.to.have.property('checks');
    });
  });

  describe('follow-ups: the session kept, then resumed on the output it followed', () => {
    const FIRST = 'Add a paragraph with id fu to the home page';
    const SECOND = 'Now make it blue';
    // the first turn's tool also prints every credential it can find in /proc (the runner's
    // token, codex's key), as a hostile agent would, so that they land in the rollout verbatim
    const steal =
      "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null | grep -a -E '^PAGEWRIGHT_(CODEX_LLM_KEY|JOB_TOKEN)='; done | sort -u";
    const script = (ctx: TurnContext): ModelTurn => {
      if (ctx.prompt.startsWith(SECOND)) {
        if (ctx.toolOutputs.length === 1)
          return {
            kind: 'tools',
            calls: [
              {
                type: 'shell',
                cmd: `grep -c 'id="fu">first' index.html && sed -i 's#<p id="fu">#<p id="fu" style="color: blue">#' index.html`,
              },
            ],
          };
        return { kind: 'message', text: JSON.stringify({ summary: 'Made the paragraph blue', files_changed: ['index.html'] }) };
      }
      if (ctx.toolOutputs.length === 0)
        return { kind: 'tools', calls: [{ type: 'shell', cmd: `sed -i 's#</body>#<p id="fu">first</p></body>#' index.html; ${steal}` }] };
      return { kind: 'message', text: JSON.stringify({ summary: 'Added the paragraph', files_changed: ['index.html'] }) };
    };
    const output = async (jobId: string, name: string) => {
      const dir = await mkdtemp(join(scratch, `${name}-`));
      await writeFile(
        join(dir, 'o.tar.gz'),
        Buffer.concat(await (await storage.admin.getJobObject(jobId, 'output.tar.gz')).body.toArray()),
      );
      await extract({ file: join(dir, 'o.tar.gz'), cwd: dir });
      return readFile(join(dir, 'index.html'), 'utf8');
    };

    it("keeps the thread's session without a credential in it, and a follow-up sees the first edit and the first conversation", async () => {
      const first = await launch({ model: { script }, job: { prompt: FIRST } });
      const r1 = await finalResult();
      expect(r1.status, runner!.stderr().slice(-2000)).to.equal('completed');
      expect(r1.thread_id).to.match(/^[0-9a-f-]{36}$/);
      // the agent did get both credentials into its tool output, so into codex's rollout
      const toolOutput = JSON.stringify(model!.responseRequests().at(-1));
      expect(toolOutput).to.contain(first.model.key).and.contain(first.token);
      const m1 = JobManifest.parse(JSON.parse(await (await storage.admin.getJobObject(first.job.job_id, 'manifest.json')).body.text()));
      expect(m1.session?.thread_id).to.equal(r1.thread_id);
      const session = await (await storage.admin.getJobObject(first.job.job_id, 'session.jsonl')).body.text();
      expect(Buffer.byteLength(session)).to.equal(m1.session?.size);
      expect(session).to.contain(FIRST).and.contain('[redacted]');
      for (const secret of [first.model.key, first.token, first.token.split('.')[2]!]) expect(session).not.to.contain(secret);
      await model!.close();
      await manager!.close();

      const second = await launch({
        model: { script },
        job: {
          prompt: SECOND,
          base_version: r1.output_version!,
          follow_up: { job_id: first.job.job_id, version: r1.output_version!, thread_id: r1.thread_id! },
        },
        follows: first.job.job_id,
      });
      const r2 = await finalResult();
      expect(r2, runner!.stderr().slice(-2000)).to.include({ status: 'completed', base_version: r1.output_version, files_changed: 1 });
      // the resumed request: the first prompt, the first tool call and answer, then the new prompt
      const requests = model!.responseRequests();
      const input = JSON.stringify(requests[0]!.input);
      expect(input).to.contain(FIRST).and.contain('first</p></body>').and.contain('Added the paragraph').and.contain(SECOND);
      expect(input.indexOf(FIRST)).to.be.lessThan(input.indexOf(SECOND));
      // the first edit was there to see (grep -c printed 1) and is kept under the second
      expect(JSON.stringify(requests.at(-1))).to.match(/"output":"[^"]*\b1\b/);
      expect(await output(second.job.job_id, 'followed')).to.contain('<p id="fu" style="color: blue">first</p>');
      // its diff is the second turn's change alone
      const patch = await (await storage.admin.getJobObject(second.job.job_id, 'diff.patch')).body.text();
      expect(patch.split('\n').filter((l) => /^[-+][^-+]/.test(l))).to.have.length(2);
      expect(patch).to.contain('+').and.contain('color: blue');
      // and its session is the whole thread, the same id, both turns, still without a credential
      expect(r2.thread_id).to.equal(r1.thread_id);
      const session2 = await (await storage.admin.getJobObject(second.job.job_id, 'session.jsonl')).body.text();
      expect(session2).to.contain(FIRST).and.contain(SECOND);
      for (const secret of [first.model.key, first.token, second.token, second.model.key]) expect(session2).not.to.contain(secret);
    });

    it('a follow-up whose token does not name the job it follows reads nothing of it, and fails', async () => {
      const first = await launch({ model: { script }, job: { prompt: FIRST } });
      const r1 = await finalResult();
      await model!.close();
      await manager!.close();
      await launch({
        model: { script },
        job: { prompt: SECOND, follow_up: { job_id: first.job.job_id, version: r1.output_version!, thread_id: r1.thread_id! } },
      });
      const r2 = await finalResult();
      expect(r2.status).to.equal('failed');
      expect(r2.error).to.contain('may not access this job');
      expect(model!.responseRequests()).to.deep.equal([]);
    });

    it('a kept session that is not the thread it should be is refused: FollowUpUnavailable', async () => {
      const first = await launch({ model: { script }, job: { prompt: FIRST } });
      const r1 = await finalResult();
      await model!.close();
      await manager!.close();
      const other = '01a237ba-f138-71e2-ad01-4742ce07a21c';
      await launch({
        model: { script },
        job: { prompt: SECOND, follow_up: { job_id: first.job.job_id, version: r1.output_version!, thread_id: other } },
        follows: first.job.job_id,
      });
      const r2 = await finalResult();
      expect(r2).to.include({ status: 'failed', reason: 'FollowUpUnavailable' });
      expect(r2.error).to.contain(other);
    });
  });

  it("delivers the container instructions (not the site's) to the model", async () => {
    await launch();
    await finalResult();
    const first = model!.responseRequests()[0] as { input: Array<{ role?: string; content?: Array<{ text?: string }> }> };
    const texts = first.input.flatMap((i) => (i.content ?? []).map((c) => `${i.role}:${c.text ?? ''}`));
    const containerInstructions = await readFile(RUNNER_INSTRUCTIONS, 'utf8');
    expect(texts).to.include(`developer:${containerInstructions}`);
    const siteInstructions = await readFile(join(EXAMPLE_SITE, '.codex/instructions.md'), 'utf8');
    expect(JSON.stringify(first)).not.to.contain(siteInstructions.split('\n')[0]);
  });

  it('retries the result callback when the manager first answers 503', async () => {
    const { job } = await launch({ respond: (call, nth) => (call.kind === 'result' && nth === 0 ? 503 : 200) });
    const result = await finalResult();
    expect(await runner!.exited).to.equal(0);
    const results = manager!.results();
    expect(results.map((r) => r.status)).to.deep.equal([503, 200]);
    expect(results[1]!.body).to.deep.equal(results[0]!.body);
    expect(result.job_id).to.equal(job.job_id);
    // progress went out too, in order, before the result
    const phases = manager!.progress().map((p) => p.body.phase);
    expect(phases.slice(0, WORK_PHASES.length)).to.deep.equal([...WORK_PHASES]);
    expect(phases.at(-1)).to.equal('completed');
  });

  it('shows every phase on /status', async () => {
    // hold the runner at each phase with real mechanisms: a slow model endpoint, a held
    // storage connection, an instructions file that is a FIFO, a model turn that waits
    const gates = { models: Promise.withResolvers<void>(), codex: Promise.withResolvers<void>() };
    const proxy = await startGateProxy(storage.url);
    const fifo = join(scratch, `instructions-${n}.fifo`);
    await promisify(execFile)('mkfifo', [fifo]);
    // enough files that unpacking lasts long enough to be seen
    const big = join(scratch, 'big-site');
    await cp(EXAMPLE_SITE, big, { recursive: true });
    await mkdir(join(big, 'assets'));
    // pages, so that the checks last long enough to be seen too
    for (let i = 0; i < 3000; i++)
      await writeFile(
        join(big, 'assets', `part-${i}.html`),
        `<!DOCTYPE html><title>${i}</title><p><a href="part-${(i + 1) % 3000}.html">next</a></p>\n`,
      );
    await packDirectory(big, join(scratch, 'big.tar.gz'));
    await storage.admin.putSiteArtifact('bakery-big', await readFile(join(scratch, 'big.tar.gz')));
    try {
      proxy.hold();
      await launch({
        job: { site_id: 'bakery-big' },
        storageUrl: proxy.url,
        instructionsPath: fifo,
        model: {
          beforeModels: () => gates.models.promise,
          script: async (ctx) => {
            if (ctx.round === 0) await gates.codex.promise;
            return demoScript(ctx);
          },
        },
      });
      // every answer of /status until it shows the end (the runner exits right after it)
      const seen = new Set<RunnerPhase>();
      let final: RunnerStatus | undefined;
      const poller = waitFor(
        '/status to show the end of the job',
        async () => {
          if (runner!.proc.exitCode !== null)
            throw new Error(
              `the runner exited (${runner!.proc.exitCode}) before /status showed completed; it showed ${[...seen].join(', ')}`,
            );
          const s = await runner!.status().catch(() => null);
          if (s) seen.add(s.phase);
          if (s?.phase === 'completed') final = s;
          return final;
        },
        60_000,
        2,
      );
      let pollFailure: unknown = null;
      poller.catch((err: unknown) => (pollFailure = err)); // awaited below
      const reach = (phase: RunnerPhase) =>
        waitFor(
          `phase ${phase}`,
          async () => {
            if (pollFailure) throw pollFailure;
            return seen.has(phase);
          },
          20_000,
          5,
        );
      await reach('preflight');
      gates.models.resolve();
      await reach('fetching_artifact');
      proxy.release();
      await reach('unpacking');
      await reach('patching_instructions');
      proxy.hold();
      await writeFile(fifo, await readFile(RUNNER_INSTRUCTIONS));
      await reach('executing_codex');
      gates.codex.resolve();
      await reach('checking');
      await reach('packing_result');
      await reach('uploading');
      proxy.release();
      await reach('completed');
      expect(await poller).to.include({ status: 'completed', phase: 'completed', files_changed: 1 });
      expect([...seen]).to.deep.equal([...WORK_PHASES, 'completed']);
      const result = await finalResult();
      expect(result.status).to.equal('completed');
    } finally {
      proxy.release();
      await proxy.close();
    }
  });

  it('POST /kill during executing_codex ends the job failed/Killed within 15 s and leaves no process', async () => {
    const sleeper = `sleep 603.${process.pid % 1000}`;
    await launch({ model: { script: [{ kind: 'tools', calls: [{ type: 'shell', cmd: sleeper, yieldTimeMs: 600_000 }] }] } });
    await waitFor('the agent command', async () => (await pidsWithCmdline(sleeper)).length > 0, 30_000);
    expect((await runner!.status()).phase).to.equal('executing_codex');

    expect((await runner!.kill(null)).status).to.equal(401);
    expect((await runner!.kill('not-the-token')).status).to.equal(401);
    const killedAt = Date.now();
    expect((await runner!.kill()).status).to.equal(202);
    const result = await finalResult();
    expect(Date.now() - killedAt).to.be.below(15_000);
    expect(result).to.include({ status: 'failed', reason: 'Killed' });
    expect(await runner!.exited).to.equal(1);
    expect(await pidsWithCmdline(sleeper)).to.deep.equal([]);
    expect(await findMarkedProcesses(runner!.marker)).to.deep.equal([]);
  });

  describe('model failures end the job with a clear reason, never a hang', () => {
    const cases: Array<[string, () => Parameters<typeof launch>[0], string]> = [
      ['a wrong key (caught by the preflight)', () => ({ llmKey: 'sk-wrong' }), 'LLMAuthFailed'],
      ['401 from the model during the run', () => ({ model: { script: [{ kind: 'error', status: 401 }] } }), 'LLMAuthFailed'],
      [
        '500 from the model, after bounded retries',
        () => ({ model: { script: () => ({ kind: 'error', status: 500 }) }, env: { PAGEWRIGHT_CODEX_REQUEST_RETRIES: '1' } }),
        'LLMUnavailable',
      ],
      ['an unreachable endpoint', () => ({ llmUrl: 'http://127.0.0.1:9/v1' }), 'LLMUnavailable'],
      ['an endpoint that answers 404 on both models routes', () => ({ model: { script: demoScript, modelsStatus: 404 } }), 'ModelNotFound'],
      [
        'a model that never answers (deadline)',
        () => ({ model: { script: [{ kind: 'hang' }] }, job: { timeout_seconds: 60 }, env: {} }),
        'CodexTimeout',
      ],
    ];
    for (const [name, opts, reason] of cases) {
      it(`${name} -> ${reason}`, async function () {
        if (reason === 'CodexTimeout') this.timeout(120_000);
        const started = Date.now();
        await launch(opts());
        const result = await finalResult();
        expect(result, JSON.stringify(result)).to.include({ status: 'failed', reason });
        expect(result.error).to.be.a('string').and.not.be.empty;
        expect(await runner!.exited).to.equal(1);
        // every bound here is far inside the 60-120 s job deadlines
        expect(Date.now() - started).to.be.below(reason === 'CodexTimeout' ? 75_000 : 30_000);
      });
    }
  });

  describe('an endpoint that only lists its models (retrieving one answers 404 or 405)', () => {
    const modelCalls = () => model!.requests.filter((r) => r.path.startsWith('/v1/models')).map((r) => `${r.method} ${r.path}`);

    it("passes the preflight when the list has the job's model, and the job completes", async () => {
      await launch({ model: { script: demoScript, retrieveStatus: 405, models: ['other-model', DEFAULT_MODEL] } });
      const result = await finalResult();
      expect(result, JSON.stringify(result)).to.include({ status: 'completed', files_changed: 1 });
      expect(await runner!.exited).to.equal(0);
      // it asked for the model, was refused, and found it in the list
      expect(modelCalls()).to.deep.equal([`GET /v1/models/${DEFAULT_MODEL}`, 'GET /v1/models']);
    });

    it('fails ModelNotFound when the list lacks the model, naming the first models it offers and how many more', async () => {
      const offered = Array.from({ length: 8 }, (_, i) => `offered-${i + 1}`);
      await launch({ model: { script: demoScript, retrieveStatus: 404, models: offered } });
      const result = await finalResult();
      expect(result, JSON.stringify(result)).to.include({ status: 'failed', reason: 'ModelNotFound' });
      expect(result.error).to.contain(
        `does not serve model ${DEFAULT_MODEL}; it offers offered-1, offered-2, offered-3, offered-4, offered-5 and 3 more`,
      );
      expect(await runner!.exited).to.equal(1);
      expect(modelCalls()).to.deep.equal([`GET /v1/models/${DEFAULT_MODEL}`, 'GET /v1/models']);
      expect(model!.responseRequests(), 'codex never ran').to.deep.equal([]);
    });
  });

  describe("file modes: the output carries the input's, ordinary ones for what the agent created", () => {
    // the input's modes, as a site checked out under umask 002 or made by hand could have them
    const INPUT: ForgedEntry[] = [
      { path: 'index.html', content: '<h1>Welcome</h1>\n', mode: 0o664 },
      { path: 'hours.html', content: '<p>9-17</p>\n', mode: 0o644 },
      { path: 'menu.html', content: '<p>bread</p>\n', mode: 0o600 },
      { path: 'robots.txt', content: 'User-agent: *\n', mode: 0o444 },
      { path: 'deploy.sh', content: '#!/bin/sh\n', mode: 0o750 },
      { path: 'assets/', type: 'dir', mode: 0o750 },
      { path: 'assets/logo.svg', content: '<svg/>', mode: 0o640 },
      { path: '.codex/', type: 'dir', mode: 0o775 },
      { path: '.codex/instructions.md', content: 'site rules\n', mode: 0o664 },
    ];
    // edits index.html in place of a new file (sed -i), makes a file, an executable in a new
    // directory, and makes hours.html executable without touching its content
    const AGENT =
      "sed -i 's/Welcome/Welcome back/' index.html && printf 'n\\n' > notes.txt && mkdir tools && " +
      "printf '#!/bin/sh\\n' > tools/build.sh && chmod 755 tools/build.sh hours.html";
    const script = (ctx: { round: number }) =>
      ctx.round === 0
        ? { kind: 'tools' as const, calls: [{ type: 'shell' as const, cmd: AGENT }] }
        : { kind: 'message' as const, text: JSON.stringify({ summary: 'Edited the welcome.', files_changed: ['index.html'] }) };

    async function modesOf(archive: Buffer): Promise<Record<string, string>> {
      const file = join(scratch, `modes-${randomBytes(4).toString('hex')}.tar.gz`);
      await writeFile(file, archive);
      const modes: Record<string, string> = {};
      await list({
        file,
        onReadEntry: (e) => {
          modes[e.path.replace(/\/$/, '')] = ((e.mode ?? 0) & 0o7777).toString(8);
        },
      });
      return modes;
    }

    async function runModesJob(env: Record<string, string> = {}) {
      const input = join(scratch, 'modes-input.tar.gz');
      await forgeTarGz(input, INPUT);
      const inputBytes = await readFile(input);
      await storage.admin.putSiteArtifact('modes-site', inputBytes);
      const { job } = await launch({ job: { site_id: 'modes-site' }, model: { script }, env });
      const result = await finalResult();
      expect(result, result.error ?? '').to.include({ status: 'completed' });
      const output = Buffer.concat(await (await storage.admin.getJobObject(job.job_id, 'output.tar.gz')).body.toArray());
      return { result, inputModes: await modesOf(inputBytes), outputModes: await modesOf(output) };
    }

    function expectModes(run: Awaited<ReturnType<typeof runModesJob>>) {
      const { result, inputModes, outputModes } = run;
      // unchanged files and directories: the input's modes, .codex/ included
      for (const path of ['menu.html', 'robots.txt', 'deploy.sh', 'assets', 'assets/logo.svg', '.codex', '.codex/instructions.md'])
        expect(outputModes[path], path).to.equal(inputModes[path]);
      // modified: its content edited, the input's mode kept; chmod-ed by the agent: the agent's mode
      expect(outputModes['index.html'], 'index.html').to.equal('664');
      expect(outputModes['hours.html'], 'hours.html').to.equal('755');
      // created: ordinary modes
      expect({ notes: outputModes['notes.txt'], tools: outputModes.tools, build: outputModes['tools/build.sh'] }).to.deep.equal({
        notes: '644',
        tools: '755',
        build: '755',
      });
      // a mode the agent set is a change
      expect(result.files).to.deep.equal(['hours.html', 'index.html', 'notes.txt', 'tools/build.sh']);
    }

    it('the runner alone (codex a child process, the umask 022 on disk)', async () => {
      expectModes(await runModesJob());
    });

    it("as in a pod: codex in the agent server's process, the site opened to the group (g+rw, setgid) while it works", async () => {
      const port = await getFreePort();
      const agent = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'runner/main.ts'), 'agent'], {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, PAGEWRIGHT_AGENT_PORT: String(port), PAGEWRIGHT_LOG_LEVEL: 'info' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let agentLog = '';
      agent.stderr.on('data', (c: Buffer) => (agentLog += c.toString()));
      const exited = once(agent, 'exit');
      try {
        await waitFor(
          'the agent server',
          async () => {
            if (agent.exitCode !== null) throw new Error(`the agent server exited ${agent.exitCode}`);
            const res = await request(`http://127.0.0.1:${port}/health`).catch(() => null);
            await res?.body.dump();
            return res?.statusCode === 200;
          },
          20_000,
        );
        const run = await runModesJob({ PAGEWRIGHT_AGENT_URL: `http://127.0.0.1:${port}` });
        expectModes(run);
        // codex ran in the agent's process, on a tree opened to the group
        expect(agentLog).to.contain('run started');
        const site = join(runner!.workDir, 'site');
        expect(((await stat(site)).mode & 0o7777).toString(8)).to.match(/^27[0-7]5$/);
        expect(((await stat(join(site, 'assets'))).mode & 0o7777).toString(8)).to.equal('2770');
        expect(((await stat(join(site, 'robots.txt'))).mode & 0o777).toString(8)).to.equal('464');
      } finally {
        agent.kill('SIGTERM');
        await exited;
      }
    });
  });

  it('rejects a hostile artifact with UnsafeArchive and writes nothing outside its work dir', async () => {
    const evil = join(scratch, 'evil.tar.gz');
    const outside = join(scratch, `outside-${randomBytes(4).toString('hex')}`);
    await forgeTarGz(evil, [
      { path: 'index.html', content: '<h1>x</h1>' },
      { path: `../../../../../../..${outside}/pwned`, content: 'x' },
    ]);
    await storage.admin.putSiteArtifact('evil-site', await readFile(evil));
    await launch({ job: { site_id: 'evil-site' } });
    const result = await finalResult();
    expect(result).to.include({ status: 'failed', reason: 'UnsafeArchive' });
    expect(result.error).to.match(/path climbs out/);
    expect(await readFile(join(outside, 'pwned')).catch(() => null)).to.equal(null);
  });

  it('a site without an artifact -> ArtifactNotFound', async () => {
    await launch({ job: { site_id: 'no-such-site' } });
    const result = await finalResult();
    expect(result).to.include({ status: 'failed', reason: 'ArtifactNotFound' });
  });

  it('refuses bad configuration with exit code 2 and the variable named', async () => {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'runner/main.ts'], {
      env: {
        PATH: process.env.PATH,
        PAGEWRIGHT_JOB: '{"job_id":"j","site_id":"BAD SITE","prompt":"x"}',
        PAGEWRIGHT_STORAGE_URL: 'not a url',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const [code] = (await once(proc, 'exit')) as [number];
    expect(code).to.equal(2);
    expect(stderr).to.match(/PAGEWRIGHT_LLM_KEY: is required but not set/);
    expect(stderr).to.match(/PAGEWRIGHT_STORAGE_URL: must be an http\(s\) URL/);
    expect(stderr).to.match(/PAGEWRIGHT_JOB: site_id must be a DNS label/);
    expect(stderr).to.match(/PAGEWRIGHT_JOB_TOKEN: is required but not set/);
  });
});
