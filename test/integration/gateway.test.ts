/**
 * The model gateway over HTTP (gateway/app.ts, the app its main.ts serves), in front of the
 * scripted model, with the real Codex CLI as a client where it matters: credentials, the live
 * attempt, the job's model, its budget, one backoff shared by every job on an upstream 429,
 * streaming passed through unchanged, and usage reported.
 *
 * Stand-ins, and what they do not do: which attempts are live comes from a map here, not from
 * the watch on PagewrightJobs (that watch, and the whole path through the manager into
 * status.usage, run on the real node: test/node/red-team.test.ts); usage reports go to a recorder
 * here, not to the manager's API.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Agent, request } from 'undici';
import { demoScript } from '../../cli/demo-script.js';
import { type ModelServer, type ModelTurn, type TurnContext, startModelServer } from '../../cli/model-server.js';
import { type Budget, type GatewayClaims, GatewayCredentials } from '../../common/gateway-credential.js';
import { silentLogger } from '../../common/logger.js';
import { DEFAULT_MODEL } from '../../common/models.js';
import type { UsageReport } from '../../common/schemas.js';
import { GATEWAY_DEFAULTS, createGatewayApp } from '../../gateway/app.js';
import { SharedBackoff } from '../../gateway/backoff.js';
import { UsageLedger } from '../../gateway/ledger.js';
import { GatewayMetrics } from '../../gateway/metrics.js';
import { runCodex } from '../../runner/codex.js';
import { bundledCodexBinary } from '../../cli/codex-binary.js';

const BIG_BUDGET: Budget = { maxRequests: 100, maxInputTokens: 1_000_000, maxOutputTokens: 100_000 };

describe('model gateway (HTTP, in front of the scripted model)', function () {
  this.timeout(60_000);
  let model: ModelServer;
  let server: Server;
  let url: string;
  let credentials: GatewayCredentials;
  let reports: UsageReport[];
  let ended: Set<string>;
  let backoff: SharedBackoff;
  let script: (ctx: TurnContext) => ModelTurn | Promise<ModelTurn>;
  /** Model calls that reached the scripted model during this test. */
  let callsBefore = 0;
  const upstreamCalls = () => model.requests.filter((r) => r.path === '/v1/responses').slice(callsBefore);
  const upstream = new Agent();

  before(async () => {
    model = await startModelServer({ script: (ctx) => script(ctx) });
    credentials = new GatewayCredentials(randomBytes(32).toString('hex'));
  });
  beforeEach(async () => {
    script = demoScript;
    callsBefore = model.requests.filter((r) => r.path === '/v1/responses').length;
    reports = [];
    ended = new Set();
    backoff = new SharedBackoff(200, 2000);
    const app = createGatewayApp({
      ...GATEWAY_DEFAULTS,
      upstreamUrl: model.url,
      llmKey: model.key,
      maxRequestBytes: 1024 * 1024,
      upstreamHeadersTimeoutMs: 10_000,
      upstreamBodyTimeoutMs: 10_000,
      credentials,
      attempts: {
        synced: true,
        verdict: (c: GatewayClaims) =>
          ended.has(`${c.jobId}/${c.attempt}`)
            ? { live: false, message: `attempt ${c.attempt} of job ${c.name} has ended: test` }
            : { live: true },
        recordedUsage: () => ({ requests: 0, inputTokens: 0, outputTokens: 0 }),
      },
      ledger: new UsageLedger(),
      backoff,
      reporter: { report: (r) => reports.push(r) },
      metrics: new GatewayMetrics(),
      logger: silentLogger,
      upstream,
    });
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  after(async () => {
    await model.close();
    await upstream.close();
  });

  const credential = (o: { jobId?: string; attempt?: number; model?: string; budget?: Budget; ttlSeconds?: number; now?: number } = {}) =>
    credentials.issue({
      jobId: o.jobId ?? 'job-1',
      namespace: 'ns',
      name: 'job-1',
      attempt: o.attempt ?? 1,
      model: o.model ?? DEFAULT_MODEL,
      budget: o.budget ?? BIG_BUDGET,
      ttlSeconds: o.ttlSeconds ?? 600,
      ...(o.now ? { now: o.now } : {}),
    });
  const respond = async (
    token: string | null,
    body: Record<string, unknown> = {
      model: DEFAULT_MODEL,
      stream: true,
      input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] }],
    },
  ) => {
    const res = await request(`${url}/responses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    const text = await res.body.text();
    return {
      status: res.statusCode,
      text,
      code: res.statusCode >= 400 ? (JSON.parse(text) as { error: { code: string; message: string } }).error : null,
    };
  };

  it("streams the model's answer through byte for byte, with the real key upstream and never the credential", async () => {
    const token = await credential();
    const through = await respond(token);
    const direct = await request(`${model.url}/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${model.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: DEFAULT_MODEL,
        stream: true,
        input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] }],
      }),
    });
    const normalize = (s: string) => s.replace(/(resp|msg|call)_\d+/g, 'ID');
    expect(through.status).to.equal(200);
    expect(normalize(through.text)).to.equal(normalize(await direct.body.text()));
    const seen = upstreamCalls().map((r) => String(r.headers.authorization));
    expect(seen).to.include(`Bearer ${model.key}`);
    expect(seen.join(' ')).to.not.contain(token);
    expect(reports.at(-1)).to.deep.include({ job_id: 'job-1', attempt: 1, usage: { requests: 1, inputTokens: 100, outputTokens: 20 } });
  });

  it('refuses a missing, forged or expired credential and an ended attempt, each with its code', async () => {
    expect((await respond(null)).code?.code).to.equal('TokenMissing');
    const forged = await new GatewayCredentials('f'.repeat(32)).issue({
      jobId: 'job-1',
      namespace: 'ns',
      name: 'job-1',
      attempt: 1,
      model: DEFAULT_MODEL,
      budget: BIG_BUDGET,
      ttlSeconds: 600,
    });
    expect(await respond(forged)).to.deep.include({ status: 401 });
    expect((await respond(forged)).code?.code).to.equal('TokenInvalid');
    const expired = await credential({ ttlSeconds: 1, now: Date.now() - 60_000 });
    expect((await respond(expired)).code?.code).to.equal('TokenExpired');
    ended.add('job-1/1');
    const over = await respond(await credential());
    expect(over.status).to.equal(403);
    expect(over.code?.code).to.equal('AttemptEnded');
    expect(over.code?.message).to.match(/attempt 1 of job job-1 has ended/);
    expect(upstreamCalls()).to.have.length(0);
  });

  it('lets a job call only its own model', async () => {
    const res = await respond(await credential({ model: 'gpt-5.5' }), { model: 'gpt-expensive', stream: true, input: [] });
    expect(res.status).to.equal(403);
    expect(res.code).to.deep.include({ code: 'ModelNotAllowed' });
    expect(reports.at(-1)?.refusal).to.deep.include({ reason: 'ModelNotAllowed' });
  });

  it('refuses the call past the budget at once, and says which limit: requests, then tokens', async () => {
    const token = await credential({ budget: { ...BIG_BUDGET, maxRequests: 2 } });
    expect((await respond(token)).status).to.equal(200);
    expect((await respond(token)).status).to.equal(200);
    const third = await respond(token);
    expect(third.status).to.equal(403);
    expect(third.code?.code).to.equal('LLMBudgetExceeded');
    expect(third.code?.message).to.match(/2 of its 2 model requests/);
    expect(reports.at(-1)).to.deep.include({
      refusal: { reason: 'LLMBudgetExceeded', message: 'budget exceeded: the job made 2 of its 2 model requests' },
    });
    // 20 output tokens a call: two calls spend 40, the third is refused
    const tokens = await credential({ jobId: 'job-2', budget: { ...BIG_BUDGET, maxOutputTokens: 40 } });
    expect((await respond(tokens)).status).to.equal(200);
    expect((await respond(tokens)).status).to.equal(200);
    expect((await respond(tokens)).code?.message).to.match(/40 of its 40 output tokens/);
    // each call may produce only what is left: the second asked for at most 20 (40 less the first's 20)
    expect(
      upstreamCalls()
        .slice(-2)
        .map((r) => (r.body as { max_output_tokens?: number }).max_output_tokens),
    ).to.deep.equal([40, 20]);
    // 20 of 30 spent after one call: the 10 left are below the 16 a call needs, refused before it goes upstream
    const few = await credential({ jobId: 'job-3', budget: { ...BIG_BUDGET, maxOutputTokens: 30 } });
    expect((await respond(few)).status).to.equal(200);
    const second = await respond(few);
    expect(second.code).to.deep.include({ code: 'LLMBudgetExceeded' });
    expect(second.code?.message).to.match(/10 output tokens are left/);
  });

  it('an upstream 429: every job waits out Retry-After together, then goes through', async () => {
    let limited = 1;
    script = (ctx) => (limited-- > 0 ? { kind: 'error', status: 429, message: 'slow down', retryAfter: '1' } : demoScript(ctx));
    const started = Date.now();
    const first = respond(await credential());
    await new Promise((r) => setTimeout(r, 200)); // the 429 has set the backoff by now
    const second = respond(await credential({ jobId: 'job-2' }));
    const [a, b] = await Promise.all([first, second]);
    expect([a.status, b.status]).to.deep.equal([200, 200]);
    expect(Date.now() - started).to.be.at.least(1000);
    // the second job never hit the limit itself: it waited, and went once
    expect(upstreamCalls()).to.have.length(3);
  });

  it("a rate limit that outlasts the attempt's deadline: LLMRateLimited, without waiting for it", async () => {
    script = () => ({ kind: 'error', status: 429, message: 'slow down', retryAfter: '600' });
    const started = Date.now();
    const res = await respond(await credential({ ttlSeconds: 30 }));
    expect(res.status).to.equal(403);
    expect(res.code?.code).to.equal('LLMRateLimited');
    expect(Date.now() - started).to.be.below(5000);
    expect(reports.at(-1)?.refusal?.reason).to.equal('LLMRateLimited');
  });

  it('the real Codex CLI works through it, and a budget of one call ends codex at its second', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-gw-codex-'));
    try {
      await mkdir(join(dir, 'site'));
      await writeFile(join(dir, 'site', 'index.html'), '<html>\n<body>\n<main>\n<h1>Bakery</h1>\n</main>\n</body>\n</html>\n');
      const run = (token: string, home: string) =>
        runCodex({
          binary: bundledCodexBinary(),
          siteDir: join(dir, 'site'),
          codexHome: join(dir, home),
          prompt: 'Add a closing notice',
          instructions: 'Edit the site.',
          model: DEFAULT_MODEL,
          llmUrl: url,
          llmKey: token,
          deadline: Date.now() + 45_000,
          marker: `gw-test-${home}-${process.pid}`,
          requestMaxRetries: 0,
          streamMaxRetries: 0,
        });
      await mkdir(join(dir, 'ok'));
      const before = upstreamCalls().length;
      const ok = await run(await credential({ jobId: 'codex-ok' }), 'ok');
      expect(ok.exitCode).to.equal(0);
      // what the model endpoint received: codex's own hosted tools (web_search, tool_search) are
      // off in the runner, so only function and custom tools are declared, and the gateway let
      // every field codex sends through (its allowlist is derived from these bodies)
      const bodies = upstreamCalls()
        .slice(before)
        .map((r) => r.body as { tools: Array<{ type: string; name?: string }>; store?: boolean });
      expect(bodies).to.have.length(3);
      for (const body of bodies) {
        expect([...new Set(body.tools.map((t) => t.type))].sort()).to.deep.equal(['custom', 'function']);
        expect(body.tools.map((t) => t.name)).to.include.members(['exec_command', 'apply_patch']);
        expect(body.store).to.equal(false);
      }
      expect(reports.filter((r) => r.job_id === 'codex-ok').at(-1)?.usage).to.deep.equal({
        requests: 3,
        inputTokens: 300,
        outputTokens: 60,
      });
      await mkdir(join(dir, 'poor'));
      const poor = await run(await credential({ jobId: 'codex-poor', budget: { ...BIG_BUDGET, maxRequests: 1 } }), 'poor').then(
        () => null,
        (err: Error) => err,
      );
      expect(poor, 'codex fails once the gateway refuses').to.be.instanceOf(Error);
      expect(reports.filter((r) => r.job_id === 'codex-poor').at(-1)).to.deep.include({
        usage: { requests: 1, inputTokens: 100, outputTokens: 20 },
      });
      expect(reports.some((r) => r.job_id === 'codex-poor' && r.refusal?.reason === 'LLMBudgetExceeded')).to.equal(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
