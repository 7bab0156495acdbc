/**
 * `pagewright demo-model` as a dev cluster runs it (deploy/dev/demo-model.yaml): the real command
 * in a child process, its key from PAGEWRIGHT_DEMO_MODEL_KEY as a Secret would set it, stopped
 * with SIGTERM as the kubelet stops it. The scripted model's answers themselves are exercised by
 * the runner and codex tests.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { expect } from 'chai';
import { request } from 'undici';
import { getFreePort } from '../support/ports.js';
import { REPO_ROOT } from '../support/sites.js';

interface DemoModel {
  proc: ChildProcess;
  stdout(): string;
  /** Resolves with the printed lines once the `model:` line is out. */
  ready: Promise<Record<string, string>>;
}

function startDemoModel(port: number, env: Record<string, string> = {}): DemoModel {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', join(REPO_ROOT, 'cli', 'main.ts'), 'demo-model', '--host', '127.0.0.1', '--port', String(port)],
    {
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const ready = new Promise<Record<string, string>>((resolve, reject) => {
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (/^model: .*\n/m.test(out)) resolve(Object.fromEntries([...out.matchAll(/^(\w+): (.*)$/gm)].map((m) => [m[1]!, m[2]!])));
    });
    proc.on('exit', (code) => reject(new Error(`demo-model exited ${code} before it was ready:\n${out}${err}`)));
  });
  return { proc, stdout: () => out, ready };
}

async function get(url: string, key: string): Promise<{ status: number; body: unknown }> {
  const res = await request(url, { headers: { authorization: `Bearer ${key}` } });
  return { status: res.statusCode, body: await res.body.json() };
}

describe('pagewright demo-model', function () {
  this.timeout(30_000);
  let model: DemoModel | undefined;
  afterEach(() => {
    if (model?.proc.exitCode === null) model.proc.kill('SIGKILL');
  });

  it('accepts the key from PAGEWRIGHT_DEMO_MODEL_KEY without echoing it, and stops cleanly on SIGTERM', async () => {
    const port = await getFreePort();
    const key = 'sk-demo-from-a-secret';
    model = startDemoModel(port, { PAGEWRIGHT_DEMO_MODEL_KEY: key });
    const lines = await model.ready;
    expect(lines.url).to.equal(`http://127.0.0.1:${port}/v1`);
    expect(model.stdout()).not.to.contain(key);

    expect(await get(`${lines.url}/models/gpt-5.5`, key)).to.deep.include({ status: 200 });
    expect((await get(`${lines.url}/models/gpt-5.5`, 'sk-another')).status).to.equal(401);

    const exited = once(model.proc, 'exit');
    model.proc.kill('SIGTERM');
    const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
    expect({ code, signal }).to.deep.equal({ code: 0, signal: null });
  });

  it('without PAGEWRIGHT_DEMO_MODEL_KEY prints a random key that it accepts', async () => {
    model = startDemoModel(await getFreePort());
    const lines = await model.ready;
    expect(lines.key).to.match(/^sk-scripted-[0-9a-f]{16}$/);
    expect((await get(`${lines.url}/models`, lines.key!)).status).to.equal(200);
    expect((await get(`${lines.url}/models`, 'sk-scripted-0000000000000000')).status).to.equal(401);
  });

  it('PAGEWRIGHT_DEMO_MODEL_DELAY_MS holds each answer that long, and a bad value is refused by name', async () => {
    model = startDemoModel(await getFreePort(), { PAGEWRIGHT_DEMO_MODEL_DELAY_MS: '1500' });
    const lines = await model.ready;
    const started = Date.now();
    const res = await request(`${lines.url}/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${lines.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'gpt-5.5',
        stream: true,
        input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hello' }] }],
      }),
    });
    const events = await res.body.text();
    expect(res.statusCode).to.equal(200);
    expect(Date.now() - started).to.be.at.least(1500);
    expect(events).to.contain('response.completed');

    const bad = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'cli', 'main.ts'), 'demo-model'], {
      env: { PATH: process.env.PATH, PAGEWRIGHT_DEMO_MODEL_DELAY_MS: 'soon' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    bad.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const [code] = (await once(bad, 'exit')) as [number | null];
    expect(code).to.equal(2);
    expect(err).to.contain('PAGEWRIGHT_DEMO_MODEL_DELAY_MS must be a whole number of milliseconds, got "soon"');
  });
});
