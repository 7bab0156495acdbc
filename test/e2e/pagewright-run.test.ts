/**
 * `pagewright run` (what `make demo` runs) end to end, as a user runs it: the built CLI in a
 * process of its own, the real runner it starts, the real Codex CLI, storage and the gateway
 * in-process, and a model endpoint given by PAGEWRIGHT_LLM_KEY/PAGEWRIGHT_LLM_URL (the scripted
 * one, so the run also shows what the agent could see). The output lands in --out.
 *
 * What the user's environment holds stays with the user: the runner and codex get a minimal
 * environment and the gateway's per-run credential, never the key or the user's variables. (The
 * agent runs as the user here, so it could read the CLI's own environment: README "Security".)
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { demoScript } from '../../cli/demo-script.js';
import { type ModelServer, startModelServer } from '../../cli/model-server.js';
import { runnerEnvironment } from '../../common/runner-launch.js';
import { EXAMPLE_SITE, REPO_ROOT } from '../support/sites.js';

/** Lists the environment of every process of the run but the CLI, then does the demo edit. */
const SNOOP = String.raw`for p in /proc/[0-9]*; do c=$(tr '\0' ' ' < $p/cmdline 2>/dev/null); case "$c" in *cli/main.js*) ;; *runner/main.js*|*codex*|*bash*) echo "== $c"; tr '\0' '\n' < $p/environ 2>/dev/null;; esac; done`;

describe('e2e: pagewright run (make demo)', function () {
  this.timeout(120_000);
  let model: ModelServer;
  let out: string;
  const canary = `pw-canary-${Date.now()}`;

  before(async () => {
    model = await startModelServer({
      script: (ctx) =>
        ctx.round === 0
          ? { kind: 'tools', calls: [{ type: 'shell', cmd: SNOOP }] }
          : demoScript({ ...ctx, round: ctx.round - 1, toolOutputs: ctx.toolOutputs.slice(1) }),
    });
    out = await mkdtemp(join(tmpdir(), 'pw-run-'));
  });
  after(async () => {
    await model.close();
    await rm(out, { recursive: true, force: true });
  });

  it("edits a copy of the site, writes the outputs, and hands the runner and the agent nothing of the user's", async () => {
    const cli = spawn(
      process.execPath,
      [join(REPO_ROOT, 'dist/cli/main.js'), 'run', '--site', EXAMPLE_SITE, '--prompt', 'Add a holiday notice', '--out', out],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          PAGEWRIGHT_LLM_KEY: model.key,
          PAGEWRIGHT_LLM_URL: model.url,
          PW_USER_SECRET: canary,
        },
      },
    );
    let stdout = '';
    let stderr = '';
    cli.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    cli.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const [code] = (await once(cli, 'exit')) as [number | null];
    expect(code, `${stdout}\n${stderr}`).to.equal(0);
    expect(stdout)
      .to.match(/completed in [\d.]+s: 1 file\(s\) changed/)
      .and.to.contain('index.html');

    // the outputs, under --out/<job id>/
    const [jobDir] = await readdir(out);
    const edited = await readFile(join(out, jobDir!, 'site', 'index.html'), 'utf8');
    expect(edited).to.contain('class="pagewright-note"');
    expect(await readFile(join(EXAMPLE_SITE, 'index.html'), 'utf8'), "the user's site itself").to.not.contain('pagewright-note');
    const manifest = JSON.parse(await readFile(join(out, jobDir!, 'manifest.json'), 'utf8')) as { result: { status: string } };
    expect(manifest.result.status).to.equal('completed');

    // the model saw the real key (through the gateway); codex sent the gateway's credential, never the key
    const calls = model.requests.filter((r) => r.path === '/v1/responses');
    expect(calls).to.have.length(4);
    expect(calls.every((r) => r.headers.authorization === `Bearer ${model.key}`)).to.equal(true);
    // what the agent's command saw of the runner's and codex's environments
    const seen = String(
      (calls[1]!.body as { input: Array<{ type: string; output?: string }> }).input.find((i) => i.type === 'function_call_output')?.output,
    );
    expect(seen)
      .to.match(/== .*runner\/main\.js/)
      .and.to.match(/PAGEWRIGHT_JOB=/);
    expect(seen, "the user's variables").to.not.contain(canary);
    expect(seen, 'the LLM key').to.not.contain(model.key);
    expect(seen).to.match(/PAGEWRIGHT_LLM_KEY=eyJ/); // the runner's: the gateway's per-run credential

    // the runner was started by the launch contract (common/runner-launch.ts): its PAGEWRIGHT_*
    // variables, in the order the process got them, are the builder's for the fields a local
    // run sets (a hand-written environment would differ in a name or in the order)
    const runnerBlock = seen.split(/^== /m).find((b) => /^\S*node\S* .*runner\/main\.js/.test(b));
    expect(runnerBlock, seen).to.be.a('string');
    const runnerVars = runnerBlock!
      .split('\n')
      .filter((l) => l.startsWith('PAGEWRIGHT_'))
      .map((l) => l.slice(0, l.indexOf('=')));
    const contract = runnerEnvironment({
      job: {} as never,
      port: 0,
      host: '',
      workDir: '',
      llmUrl: '',
      managerUrl: '',
      storageUrl: '',
      codexBinary: '',
      instructionsPath: '',
      extra: { PAGEWRIGHT_EXIT_DELAY_MS: '' },
    });
    expect(runnerVars).to.deep.equal(contract.map((e) => e.name));
  });
});
