/**
 * The real Codex CLI (from the @openai/codex npm package) driven by runner/codex.ts against the
 * scripted model server. Only the model is scripted; codex and its tools run for real.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { bundledCodexBinary } from '../../cli/codex-binary.js';
import { PagewrightError } from '../../common/errors.js';
import { findMarkedProcesses } from '../../common/process-marker.js';
import { type CodexRunOptions, runCodex } from '../../runner/codex.js';
import { demoScript } from '../../cli/demo-script.js';
import { type ModelScript, type ModelServer, startModelServer } from '../../cli/model-server.js';
import { pidsWithCmdline } from '../support/processes.js';
import { copyExampleSite } from '../support/sites.js';

const INSTRUCTIONS = 'PAGEWRIGHT TEST INSTRUCTIONS: keep the bakery style. Quote "this" \\ and that.';

describe('codex driver (real Codex CLI)', function () {
  this.timeout(60_000);
  let root: string;
  let site: string;
  let model: ModelServer | undefined;
  let runs = 0;

  beforeEach(async () => {
    ({ root, site } = await copyExampleSite());
  });
  afterEach(async () => {
    await model?.close();
    model = undefined;
    await rm(root, { recursive: true, force: true });
  });

  async function run(script: ModelScript, overrides: Partial<CodexRunOptions> = {}) {
    model ??= await startModelServer({ script });
    const codexHome = await mkdtemp(join(root, 'codex-home-'));
    return runCodex({
      binary: bundledCodexBinary(),
      siteDir: site,
      codexHome,
      prompt: 'Add a closure notice for December 24 to 26',
      instructions: INSTRUCTIONS,
      model: 'gpt-5.5',
      llmUrl: model.url,
      llmKey: model.key,
      deadline: Date.now() + 30_000,
      marker: `codex-test-${process.pid}-${++runs}`,
      killGraceMs: 1000,
      requestMaxRetries: 0,
      streamMaxRetries: 0,
      ...overrides,
    });
  }

  async function failure(p: Promise<unknown>): Promise<PagewrightError> {
    const err = await p.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err, 'the run should have failed').to.be.instanceOf(PagewrightError);
    return err as PagewrightError;
  }

  it('edits a file through the shell tool and returns the final message', async () => {
    const result = await run([
      {
        kind: 'tools',
        calls: [
          {
            type: 'shell',
            cmd: "sed -i 's|<title>Harbor Lane Bakery</title>|<title>Harbor Lane Bakery: closed Dec 24-26</title>|' index.html",
          },
        ],
      },
      { kind: 'message', text: '{"summary":"Updated the title","files_changed":["index.html"]}' },
    ]);
    expect(result.exitCode).to.equal(0);
    expect(result.finalMessage).to.equal('{"summary":"Updated the title","files_changed":["index.html"]}');
    expect(result.codexVersion).to.match(/^\d+\.\d+\.\d+/);
    expect(await readFile(join(site, 'index.html'), 'utf8')).to.contain('<title>Harbor Lane Bakery: closed Dec 24-26</title>');
  });

  it('edits through apply_patch, sends the instructions and prompt, and adds no files of its own', async () => {
    const before = (await readdir(site, { recursive: true })).sort();
    const result = await run(demoScript);
    expect(result.exitCode).to.equal(0);
    const html = await readFile(join(site, 'index.html'), 'utf8');
    expect(html).to.contain('<aside class="pagewright-note" role="note">Add a closure notice for December 24 to 26</aside>');
    expect((await readdir(site, { recursive: true })).sort()).to.deep.equal(before);

    const first = model!.responseRequests()[0] as { model: string; input: Array<{ role?: string; content?: Array<{ text?: string }> }> };
    expect(first.model).to.equal('gpt-5.5');
    const developer = first.input
      .filter((i) => i.role === 'developer')
      .flatMap((i) => i.content ?? [])
      .map((c) => c.text);
    expect(developer).to.include(INSTRUCTIONS);
    const user = first.input
      .filter((i) => i.role === 'user')
      .flatMap((i) => i.content ?? [])
      .map((c) => c.text);
    expect(user).to.include('Add a closure notice for December 24 to 26');
    // the key travels in the Authorization header only
    expect(model!.requests[0]!.headers.authorization).to.equal(`Bearer ${model!.key}`);
  });

  it("gives the agent's commands no secrets: of our environment only HOME, PATH and the run marker", async () => {
    // what codex sets for every command (pager, colour, locale, its ids) and what the shell adds
    const codexOwn = /^(CODEX_[A-Z_]+|COLORTERM|GH_PAGER|GIT_PAGER|PAGER|NO_COLOR|TERM|LANG|LC_ALL|LC_CTYPE|PWD|SHLVL|_)$/;
    const planted = { PAGEWRIGHT_JOB_TOKEN: 'job-token-must-not-leak', SOME_USER_SECRET: 'user-variable-must-not-leak' };
    Object.assign(process.env, planted);
    try {
      await run([
        { kind: 'tools', calls: [{ type: 'shell', cmd: 'env > env.txt' }] },
        { kind: 'message', text: '{"summary":"s","files_changed":[]}' },
      ]);
    } finally {
      for (const k of Object.keys(planted)) delete process.env[k];
    }
    const env = await readFile(join(site, 'env.txt'), 'utf8');
    const names = env
      .split('\n')
      .filter(Boolean)
      .map((l) => l.slice(0, l.indexOf('=')));
    expect(names.filter((n) => !codexOwn.test(n)).sort()).to.deep.equal(['HOME', 'PAGEWRIGHT_PROCESS_MARKER', 'PATH']);
    expect(env).to.match(/^PAGEWRIGHT_PROCESS_MARKER=codex-test-/m);
    for (const secret of [model!.key, ...Object.values(planted)]) expect(env).not.to.contain(secret);
  });

  it('401 from the model -> LLMAuthFailed, quickly', async () => {
    const started = Date.now();
    const err = await failure(run([{ kind: 'error', status: 401, message: 'Incorrect API key provided' }]));
    expect(err.reason).to.equal('LLMAuthFailed');
    expect(Date.now() - started).to.be.below(15_000);
  });

  it('500 from the model -> LLMUnavailable after the bounded retries', async () => {
    const started = Date.now();
    const err = await failure(run(() => ({ kind: 'error', status: 500 }), { requestMaxRetries: 1, streamMaxRetries: 1 }));
    expect(err.reason).to.equal('LLMUnavailable');
    expect(model!.responseRequests().length).to.be.within(2, 10);
    expect(Date.now() - started).to.be.below(20_000);
  });

  it('an unreachable endpoint -> LLMUnavailable, not an endless retry', async () => {
    const started = Date.now();
    const err = await failure(run([], { llmUrl: 'http://127.0.0.1:9/v1' }));
    expect(err.reason).to.equal('LLMUnavailable');
    expect(Date.now() - started).to.be.below(15_000);
  });

  it('a model that never answers -> CodexTimeout at the deadline, nothing left running', async () => {
    const marker = `codex-timeout-${process.pid}`;
    const started = Date.now();
    const err = await failure(run([{ kind: 'hang' }], { deadline: Date.now() + 3000, marker }));
    expect(err.reason).to.equal('CodexTimeout');
    expect(Date.now() - started).to.be.within(2500, 12_000);
    expect(await findMarkedProcesses(marker)).to.deep.equal([]);
  });

  it('abort while a command runs -> Killed, and the command (in its own session) is gone', async () => {
    const marker = `codex-kill-${process.pid}`;
    const sleeper = `sleep 601.${process.pid % 1000}`;
    const controller = new AbortController();
    const running = run([{ kind: 'tools', calls: [{ type: 'shell', cmd: sleeper, yieldTimeMs: 600_000 }] }], {
      signal: controller.signal,
      marker,
    });
    // wait until the agent's command really runs
    for (let i = 0; i < 400 && (await pidsWithCmdline(sleeper)).length === 0; i++) await new Promise((r) => setTimeout(r, 25));
    expect(await pidsWithCmdline(sleeper)).to.have.length.above(0);
    const killedAt = Date.now();
    controller.abort(new PagewrightError('Killed', 'test kill'));
    const err = await failure(running);
    expect(err.reason).to.equal('Killed');
    expect(Date.now() - killedAt).to.be.below(10_000);
    expect(await pidsWithCmdline(sleeper)).to.deep.equal([]);
    expect(await findMarkedProcesses(marker)).to.deep.equal([]);
  });
});
