/**
 * The model gateway played against as a hostile agent would: nothing but its own live
 * per-attempt credential, against the real gateway process (gateway/main.ts, its watch on the
 * PagewrightJobs of the test control plane), in front of a scripted model endpoint that records
 * every request that reaches it. Every case asserts the answer's status and error code and what
 * the upstream received: nothing, or exactly the body the gateway allows. The same tricks run
 * from inside a runner pod through the gateway Service in test/node/red-team.test.ts.
 *
 * Raw requests go over a plain socket (rawRequest): an HTTP client library would normalise the
 * very paths under test (`..`, `\`, absolute-form targets) before sending them.
 *
 * The gateway runs from source under tsx here, which costs it some 60 MiB of RSS more than the
 * built image's `node dist/gateway/main.js`: the memory bounds below hold with that margin.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, constants as zlibConstants } from 'node:zlib';
import { CustomObjectsApi, PatchStrategy, loadAllYaml, setHeaderOptions } from '@kubernetes/client-node';
import { expect } from 'chai';
import { request } from 'undici';
import { demoScript } from '../../cli/demo-script.js';
import { type ModelServer, type ModelServerOptions, type ModelTurn, type TurnContext, startModelServer } from '../../cli/model-server.js';
import { type Budget, GatewayCredentials } from '../../common/gateway-credential.js';
import { GROUP, PLURAL, VERSION } from '../../common/job-resource.js';
import { DEFAULT_MODEL } from '../../common/models.js';
import { type CallbackRecorder, startCallbackRecorder } from '../support/callback-recorder.js';
import { type ControlPlane, createNamespace, sharedControlPlane } from '../support/control-plane.js';
import { selfOwner } from '../support/control-plane/owner.js';
import { type GatewayProcess, startGatewayProcess } from '../support/gateway-process.js';
import { ensureCrd, randomName } from '../support/manager-env.js';
import { getFreePort } from '../support/ports.js';
import { waitFor } from '../support/processes.js';
import { REPO_ROOT } from '../support/sites.js';

const MiB = 1024 * 1024;
/** The gateway container as deploy/k8s/gateway.yaml ships it: its memory limit and the NODE_OPTIONS it runs with. */
const SHIPPED = (() => {
  const docs = loadAllYaml(readFileSync(join(REPO_ROOT, 'deploy/k8s/gateway.yaml'), 'utf8')) as Array<{
    kind: string;
    spec?: {
      template?: {
        spec?: { containers?: Array<{ env?: Array<{ name: string; value?: string }>; resources?: { limits?: { memory?: string } } }> };
      };
    };
  }>;
  const container = docs.find((d) => d.kind === 'Deployment')?.spec?.template?.spec?.containers?.[0];
  const limit = /^(\d+)Mi$/.exec(container?.resources?.limits?.memory ?? '')?.[1];
  const nodeOptions = container?.env?.find((e) => e.name === 'NODE_OPTIONS')?.value;
  if (!limit || !nodeOptions) throw new Error('deploy/k8s/gateway.yaml: no memory limit in Mi or no NODE_OPTIONS on the gateway container');
  return { memoryLimit: Number(limit) * 1024 * 1024, nodeOptions };
})();
const POD_LIMIT = SHIPPED.memoryLimit;
const BUDGET: Budget = { maxRequests: 1000, maxInputTokens: 100_000_000, maxOutputTokens: 1_000_000 };
const MAX_REQUEST_BYTES = 16 * MiB;

describe('model gateway against a hostile client (the real gateway process)', function () {
  this.timeout(120_000);
  let cp: ControlPlane;
  let ns: string;
  let custom: CustomObjectsApi;
  let modelOptions: ModelServerOptions;
  let model: ModelServer;
  let manager: CallbackRecorder;
  let gateway: GatewayProcess;
  let credentials: GatewayCredentials;
  let scratch: string;
  let script: (ctx: TurnContext) => ModelTurn | Promise<ModelTurn>;
  /** The main job's credential (a live attempt). */
  let token: string;

  /** A PagewrightJob whose attempt 1 is Running, and a credential of that attempt. */
  async function liveJob(o: { model?: string; budget?: Budget } = {}): Promise<{ name: string; uid: string; token: string }> {
    const name = randomName('hostile');
    const created = (await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PagewrightJob', metadata: { name }, spec: { siteId: 'site', prompt: 'p' } },
    })) as { metadata: { uid: string } };
    await setPhase(name, 'Running');
    const uid = created.metadata.uid;
    const issued = await credentials.issue({
      jobId: uid,
      namespace: ns,
      name,
      attempt: 1,
      model: o.model ?? DEFAULT_MODEL,
      budget: o.budget ?? BUDGET,
      ttlSeconds: 600,
    });
    // the gateway learns of the attempt from its watch: wait until it lets the credential in
    await waitFor(
      `the gateway sees ${name} live`,
      async () => (await call(issued, 'GET', `/v1/models/${o.model ?? DEFAULT_MODEL}`)).status !== 403,
      15_000,
      50,
    );
    return { name, uid, token: issued };
  }
  async function setPhase(name: string, phase: string): Promise<void> {
    await custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: PLURAL, namespace: ns, name, body: { status: { phase, attempt: 1 } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /** A request through undici (for well-formed targets), its status, error code and text. */
  async function call(
    credential: string | null,
    method: 'GET' | 'POST',
    path: string,
    body?: string | Buffer,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; code: string | null; text: string; headers: Record<string, unknown> }> {
    const res = await request(`${gateway.origin}${path}`, {
      method,
      headers: {
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(credential ? { authorization: `Bearer ${credential}` } : {}),
        ...headers,
      },
      body,
    });
    const text = await res.body.text();
    return { status: res.statusCode, code: errorCode(text), text, headers: res.headers };
  }
  const responses = (body: unknown, headers?: Record<string, string>) =>
    call(token, 'POST', '/v1/responses', typeof body === 'string' ? body : JSON.stringify(body), headers);

  /** What reached the model endpoint since `mark()`. */
  let mark = 0;
  const upstreamSince = () => model.requests.slice(mark);
  const reports = (job: string) => manager.calls.filter((c) => c.path === `/jobs/${job}/usage`).map((c) => c.body);

  /** A request as codex sends it (test/unit/gateway-policy.test.ts has the full shape). */
  const codexBody = (extra: Record<string, unknown> = {}) => ({
    model: DEFAULT_MODEL,
    stream: true,
    input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] }],
    tools: [{ type: 'function', name: 'exec_command', parameters: { type: 'object' } }],
    store: false,
    ...extra,
  });

  before(async () => {
    cp = await sharedControlPlane();
    await ensureCrd(cp);
    ns = await createNamespace(cp, 'gw-hostile');
    custom = cp.kubeConfig().makeApiClient(CustomObjectsApi);
    script = demoScript;
    modelOptions = { script: (ctx) => script(ctx) };
    model = await startModelServer(modelOptions);
    manager = await startCallbackRecorder();
    scratch = await mkdtemp(join(tmpdir(), 'pw-gw-hostile-'));
    const secret = randomBytes(32).toString('hex');
    credentials = new GatewayCredentials(secret);
    gateway = await startGatewayProcess({
      kubeconfigPath: cp.kubeconfigPath,
      namespace: ns,
      host: '127.0.0.1',
      port: await getFreePort(),
      owner: selfOwner(),
      upstream: { url: model.url, key: model.key },
      secret,
      reportToken: randomBytes(24).toString('hex'),
      managerUrl: manager.url,
      logPath: join(scratch, 'gateway.log'),
      env: {
        PAGEWRIGHT_GATEWAY_HEADERS_TIMEOUT_MS: '2000',
        PAGEWRIGHT_GATEWAY_REQUEST_TIMEOUT_MS: '4000',
        // tsx's own option goes first: it is how the test runs the source
        NODE_OPTIONS: SHIPPED.nodeOptions,
      },
    });
    token = (await liveJob()).token;
  });
  beforeEach(() => {
    script = demoScript;
    modelOptions.modelsStatus = undefined;
    mark = model.requests.length;
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.error((await gateway.logs()).slice(-4000));
  });
  after(async () => {
    await gateway?.kill();
    await model?.close();
    await manager?.close();
    await cp?.kubectl(['delete', 'namespace', ns, '--wait=false'], { allowFailure: true });
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('path tricks match no route: 404, and nothing reaches the upstream (the key never leaves for /files)', async () => {
    const targets: Array<[string, string]> = [
      ['GET', '/v1/models/..\\files'],
      ['GET', '/v1/models/..\\responses\\resp_1'],
      ['GET', '/v1/models/..%5Cfiles'],
      ['GET', '/v1/models/..%2Ffiles'],
      ['GET', '/v1/models/%2e%2e/files'],
      ['GET', '/v1/models/%2e%2e%5cvector_stores'],
      ['GET', '/v1/models/..%5C..%5Cv1%5Corganization%5Cusers'],
      ['GET', '/v1/files'],
      ['GET', '/v1/files/file-abc/content'],
      ['GET', '/v1/responses/resp_1'],
      ['POST', '/v1/chat/completions'],
      ['GET', '/v1/vector_stores'],
      ['GET', '/v1/organization/projects'],
      ['POST', '/V1/RESPONSES'],
      ['POST', '/v1/responses/'],
      ['POST', '/v1/responses?background=true'],
      ['GET', '/v1/models?limit=1000'],
      ['POST', 'http://127.0.0.1/v1/responses'],
      ['GET', 'http://api.openai.com/v1/files'],
      ['POST', '/v1//responses'],
    ];
    for (const [method, target] of targets) {
      const body = method === 'POST' ? JSON.stringify(codexBody()) : '';
      const res = await rawRequest(
        gateway.origin,
        method,
        target,
        { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
      );
      expect(res.status, `${method} ${target}`).to.equal(404);
      expect(errorCode(res.body), `${method} ${target}`).to.equal('NotFound');
    }
    expect(upstreamSince(), 'nothing reached the model endpoint').to.deep.equal([]);
  });

  it('hosted tools, fetching inputs and stored state are refused with their own codes, reported, and never forwarded', async () => {
    const image = (part: Record<string, unknown>) => ({ input: [{ type: 'message', role: 'user', content: [part] }] });
    const cases: Array<[string, Record<string, unknown>]> = [
      ['HostedToolNotAllowed', { tools: [{ type: 'web_search' }] }],
      ['HostedToolNotAllowed', { tools: [{ type: 'web_search_preview' }] }],
      ['HostedToolNotAllowed', { tools: [{ type: 'file_search', vector_store_ids: ['vs_another_job'] }] }],
      ['HostedToolNotAllowed', { tools: [{ type: 'code_interpreter', container: { type: 'auto' } }] }],
      ['HostedToolNotAllowed', { tools: [{ type: 'mcp', server_label: 'x', server_url: 'https://attacker.example/mcp' }] }],
      ['HostedToolNotAllowed', { tools: [{ type: 'image_generation' }] }],
      ['HostedToolNotAllowed', { tools: [{ type: 'computer_use_preview', display_width: 8, display_height: 8, environment: 'linux' }] }],
      ['InputNotAllowed', image({ type: 'input_image', image_url: 'https://attacker.example/beacon.png' })],
      ['InputNotAllowed', image({ type: 'input_image', file_id: 'file-another-job' })],
      ['InputNotAllowed', image({ type: 'input_file', file_url: 'https://attacker.example/a.pdf' })],
      ['InputNotAllowed', image({ type: 'input_file', file_id: 'file-another-job' })],
      ['InputNotAllowed', { input: [{ type: 'item_reference', id: 'msg_another_job' }] }],
      ['RequestNotAllowed', { background: true }],
      ['RequestNotAllowed', { previous_response_id: 'resp_another_job' }],
      ['RequestNotAllowed', { conversation: 'conv_another_job' }],
      ['RequestNotAllowed', { prompt: { id: 'pmpt_org' } }],
      ['RequestNotAllowed', { include: ['file_search_call.results'] }],
      ['RequestNotAllowed', { metadata: { exfil: 'x' } }],
    ];
    const job = await liveJob();
    for (const [code, extra] of cases) {
      const res = await call(job.token, 'POST', '/v1/responses', JSON.stringify(codexBody(extra)));
      expect([res.status, res.code], JSON.stringify(extra)).to.deep.equal([403, code]);
    }
    expect(
      upstreamSince().filter((r) => r.path === '/v1/responses'),
      'nothing reached the model endpoint',
    ).to.deep.equal([]);
    // each refusal went to the manager with its reason: it ends the job there
    await waitFor('the refusals reported', async () =>
      reports(job.uid).some((r) => (r.refusal as { reason?: string })?.reason === 'RequestNotAllowed'),
    );
    const reasons = new Set(reports(job.uid).map((r) => (r.refusal as { reason?: string } | undefined)?.reason));
    expect(reasons).to.include.members(['HostedToolNotAllowed', 'InputNotAllowed', 'RequestNotAllowed']);
  });

  it('forwards exactly the checked body: store false, no service_tier, max_output_tokens clamped, duplicate keys resolved, no client headers', async () => {
    const job = await liveJob({ budget: { ...BUDGET, maxOutputTokens: 5000 } });
    // JSON keeps the last of a duplicate key; the upstream must see the very value the gateway checked
    const raw = JSON.stringify(codexBody({ store: true, service_tier: 'priority', max_output_tokens: 1_000_000_000 })).replace(
      /^\{/,
      '{"model":"gpt-5-pro-expensive",',
    );
    const res = await call(job.token, 'POST', '/v1/responses', raw, {
      'openai-organization': 'org-other',
      'openai-project': 'proj-other',
      'openai-beta': 'assistants=v2',
      'x-forwarded-for': '10.0.0.1',
    });
    expect(res.status).to.equal(200);
    const seen = upstreamSince();
    expect(seen).to.have.length(1);
    expect(seen[0]?.url).to.equal('/v1/responses');
    expect(seen[0]?.body).to.deep.equal({ ...codexBody(), store: false, max_output_tokens: 5000 });
    for (const name of ['openai-organization', 'openai-project', 'openai-beta', 'x-forwarded-for'])
      expect(seen[0]?.headers, name).to.not.have.property(name);
    expect(seen[0]?.headers.authorization).to.equal(`Bearer ${model.key}`);
    expect(seen[0]?.headers.authorization).to.not.contain(job.token);
    // and the other way round: the last "model" is the one checked
    const other = JSON.stringify(codexBody()).replace(/\}$/, ',"model":"gpt-5-pro-expensive"}');
    const refused = await call(job.token, 'POST', '/v1/responses', other);
    expect([refused.status, refused.code]).to.deep.equal([403, 'ModelNotAllowed']);
    expect(upstreamSince()).to.have.length(1);
  });

  it('refuses a compressed body without inflating it: a 405-byte brotli bomb of 256 MiB', async () => {
    const bomb = brotliCompressSync(Buffer.alloc(256 * MiB, 0x20), { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 4 } });
    expect(bomb.length).to.be.below(1024);
    const peak = await peakRss(async () => {
      const answers = await Promise.all(Array.from({ length: 12 }, () => responses(bomb, { 'content-encoding': 'br' })));
      for (const a of answers) expect([a.status, a.code]).to.deep.equal([415, 'UnsupportedMediaType']);
      for (const encoding of ['gzip', 'deflate', 'zstd', 'br, gzip']) {
        const res = await responses(bomb, { 'content-encoding': encoding });
        expect([res.status, res.code], encoding).to.deep.equal([415, 'UnsupportedMediaType']);
      }
    });
    console.log(`      gateway peak RSS under 16 brotli bombs: ${mib(peak)}`);
    expect(peak).to.be.below(POD_LIMIT);
    expect(upstreamSince()).to.deep.equal([]);
  });

  it('holds its memory under the pod limit: twelve parallel 15 MiB bodies (503 + Retry-After past its cap) and shapes that amplify', async () => {
    // a job of its own, whose budget has room for every call in flight at once (each reserves its output tokens)
    const job = await liveJob({ budget: { ...BUDGET, maxOutputTokens: 100_000_000 } });
    const responses = (body: string) => call(job.token, 'POST', '/v1/responses', body);
    const text = (i: number) => `${i}`.padEnd(15 * MiB, 'x');
    const big = (i: number) =>
      JSON.stringify(codexBody({ input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: text(i) }] }] }));
    let statuses: number[] = [];
    const parallel = await peakRss(async () => {
      const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => responses(big(i))));
      statuses = answers.map((a) => a.status);
      for (const a of answers) {
        if (a.status === 503) {
          expect(a.code).to.equal('Overloaded');
          expect(a.headers['retry-after']).to.equal('1');
        } else expect(a.status).to.equal(200);
      }
    });
    console.log(
      `      gateway peak RSS, 12 parallel 15 MiB bodies: ${mib(parallel)} (${statuses.filter((s) => s === 200).length} forwarded, ${statuses.filter((s) => s === 503).length} told to retry)`,
    );
    expect(parallel).to.be.below(POD_LIMIT);
    expect(statuses).to.include(200);
    expect(statuses, 'past the cap, callers are told to retry').to.include(503);
    // what got through arrived whole
    for (const r of upstreamSince()) {
      const [message] = (r.body as { input: Array<{ content: Array<{ text: string }> }> }).input;
      expect(message?.content[0]?.text.length).to.equal(15 * MiB);
    }

    // shapes whose parsed form is many times their size
    const nested = `{"model":"${DEFAULT_MODEL}","input":[${'[],'.repeat(5 * MiB)}[]]}`;
    const deep = `{"model":"${DEFAULT_MODEL}","input":${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}}`;
    const keys = `{"model":"${DEFAULT_MODEL}","input":"x",${Array.from({ length: 1_000_000 }, (_, i) => `"k${i}":0`).join(',')}}`;
    const numbers = `{"model":"${DEFAULT_MODEL}","input":[${'0,'.repeat(7 * MiB)}0]}`;
    // within every bound: 60,000 small messages (240,000 nodes), parsed, checked and forwarded, twelve at once
    const many = JSON.stringify(codexBody({ input: Array.from({ length: 60_000 }, () => ({ role: 'user', content: 'x' })) }));
    const before = model.requests.length;
    let manyStatuses: number[] = [];
    const amplified = await peakRss(async () => {
      const answers = [];
      for (const body of [nested, deep, keys, numbers]) answers.push(await responses(body));
      expect(answers.map((a) => [a.status, a.code])).to.deep.equal([
        [413, 'PayloadTooLarge'],
        [400, 'BadRequest'],
        [413, 'PayloadTooLarge'],
        [413, 'PayloadTooLarge'],
      ]);
      manyStatuses = (await Promise.all(Array.from({ length: 12 }, () => responses(many)))).map((a) => a.status);
    });
    console.log(
      `      gateway peak RSS, four amplifying shapes of 2 to 15 MiB, then 12 bodies of 60,000 messages: ${mib(amplified)} (${manyStatuses.filter((s) => s === 200).length} forwarded, ${manyStatuses.filter((s) => s === 503).length} told to retry)`,
    );
    expect(amplified).to.be.below(POD_LIMIT);
    expect(
      manyStatuses.filter((s) => s !== 200 && s !== 503),
      'forwarded or told to retry',
    ).to.deep.equal([]);
    expect(manyStatuses).to.include(200);
    expect(model.requests.length - before, 'only the bodies within bounds reached the upstream').to.equal(
      manyStatuses.filter((s) => s === 200).length,
    );
  });

  it('refuses what it cannot bound before reading it: no Content-Length (411), over the limit (413)', async () => {
    const chunked = await rawRequest(
      gateway.origin,
      'POST',
      '/v1/responses',
      { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      '5\r\n{"a":\r\n0\r\n\r\n',
    );
    expect([chunked.status, errorCode(chunked.body)]).to.deep.equal([411, 'LengthRequired']);
    const declared = await rawRequest(
      gateway.origin,
      'POST',
      '/v1/responses',
      { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': String(MAX_REQUEST_BYTES + 1) },
      '{',
    );
    expect([declared.status, errorCode(declared.body)]).to.deep.equal([413, 'PayloadTooLarge']);
    const form = await call(token, 'POST', '/v1/responses', 'model=x', { 'content-type': 'application/x-www-form-urlencoded' });
    expect([form.status, form.code]).to.deep.equal([415, 'UnsupportedMediaType']);
    expect(upstreamSince()).to.deep.equal([]);
  });

  it('its timeouts fire on time: headers within 2 s (+1/4), the whole request within 4 s (+1/4)', async () => {
    const headers = await timeToClose(gateway.origin, ['POST /v1/responses HTTP/1.1\r\nHost: x\r\n'], 0);
    expect(headers).to.be.within(1900, 2500 + 400);
    const body = await timeToClose(
      gateway.origin,
      [
        `POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`,
      ],
      300,
    );
    expect(body).to.be.within(3900, 5000 + 400);
    expect(upstreamSince()).to.deep.equal([]);
  });

  it('counts the usage of a stream whose client hung up: the answer is read to its end', async () => {
    const job = await liveJob();
    // biome-ignore lint/suspicious/noThenProperty: the model server's delay turn names its next turn `then`
    script = () => ({ kind: 'delay', ms: 1500, then: { kind: 'message', text: 'late' } });
    const aborter = new AbortController();
    const dropped = request(`${gateway.url}/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${job.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(codexBody()),
      signal: aborter.signal,
    }).catch((err: Error) => err);
    await waitFor('the call upstream', async () => upstreamSince().length === 1);
    aborter.abort();
    expect(await dropped).to.be.instanceOf(Error);
    const usage = await waitFor(
      'the dropped answer counted',
      async () =>
        reports(job.uid)
          .map((r) => r.usage as { inputTokens: number; outputTokens: number })
          .find((u) => u.outputTokens > 0),
      10_000,
    );
    expect(usage).to.deep.equal({ requests: 1, inputTokens: 100, outputTokens: 20 });
  });

  it('answers the models routes from a cache, for the own model only; a 429 there sets no shared backoff', async () => {
    const mine = `gpt-5.5-hostile-${randomBytes(3).toString('hex')}`;
    const job = await liveJob({ model: mine });
    const retrieves = () => upstreamSince().filter((r) => r.path === `/v1/models/${mine}`);
    // liveJob polled it until the attempt was live: at most one of those reached the upstream
    mark = model.requests.length;
    for (let i = 0; i < 5; i++) expect((await call(job.token, 'GET', `/v1/models/${mine}`)).status).to.equal(200);
    expect(retrieves(), 'five lookups, cached').to.have.length(0);
    const lists = await Promise.all([call(job.token, 'GET', '/v1/models'), call(token, 'GET', '/v1/models')]);
    expect(lists.map((l) => l.status)).to.deep.equal([200, 200]);
    expect(upstreamSince().filter((r) => r.path === '/v1/models').length, 'two jobs, one list').to.be.at.most(1);
    const other = await call(job.token, 'GET', `/v1/models/${DEFAULT_MODEL}`);
    expect([other.status, other.code]).to.deep.equal([403, 'ModelNotAllowed']);

    // a rate limit on the models route: passed on, not cached, and nobody else waits
    const again = `gpt-5.5-hostile-${randomBytes(3).toString('hex')}`;
    const another = await credentials.issue({
      jobId: job.uid,
      namespace: ns,
      name: job.name,
      attempt: 1,
      model: again,
      budget: BUDGET,
      ttlSeconds: 600,
    });
    modelOptions.modelsStatus = 429;
    expect((await call(another, 'GET', `/v1/models/${again}`)).status).to.equal(429);
    expect((await call(another, 'GET', `/v1/models/${again}`)).status, 'an error is not cached').to.equal(429);
    expect(upstreamSince().filter((r) => r.path === `/v1/models/${again}`)).to.have.length(2);
    const started = Date.now();
    expect((await responses(codexBody())).status).to.equal(200);
    expect(Date.now() - started, 'the Responses route did not wait out a backoff').to.be.below(800);
  });

  it('forgets a job once it has ended: the ledger holds live jobs only', async () => {
    const job = await liveJob();
    expect((await call(job.token, 'POST', '/v1/responses', JSON.stringify(codexBody()))).status).to.equal(200);
    const tracked = async () =>
      Number(/^pagewright_gateway_tracked_jobs (\d+)/m.exec(await (await request(`${gateway.origin}/metrics`)).body.text())?.[1]);
    const before = await tracked();
    expect(before).to.be.at.least(1);
    await setPhase(job.name, 'Succeeded');
    await waitFor('the ledger forgets the job', async () => (await tracked()) === before - 1, 10_000, 50);
    const late = await call(job.token, 'POST', '/v1/responses', JSON.stringify(codexBody()));
    expect([late.status, late.code]).to.deep.equal([403, 'AttemptEnded']);
  });

  /** The gateway's peak RSS while `attack` runs (VmHWM, reset first through clear_refs). */
  async function peakRss(attack: () => Promise<void>): Promise<number> {
    const pid = gateway.proc.pid!;
    await writeFile(`/proc/${pid}/clear_refs`, '5');
    await attack();
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]) * 1024;
  }
});

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(0)} MiB`;
}

function errorCode(text: string): string | null {
  try {
    return (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? null;
  } catch {
    return null;
  }
}

/** One request written verbatim on a socket (the target as given), read until the server closes. */
async function rawRequest(
  origin: string,
  method: string,
  target: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(origin);
  const lines = [`${method} ${target} HTTP/1.1`, `Host: ${hostname}:${port}`, 'Connection: close'];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (!headers['transfer-encoding'] && !headers['content-length']) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  const socket = connect(Number(port), hostname);
  socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
  const chunks: Buffer[] = [];
  for await (const c of socket) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  let rest = text.slice(text.indexOf('\r\n\r\n') + 4);
  if (/\r\ntransfer-encoding: chunked/i.test(text.slice(0, text.indexOf('\r\n\r\n')))) {
    let out = '';
    for (;;) {
      const nl = rest.indexOf('\r\n');
      const size = Number.parseInt(rest.slice(0, nl), 16);
      if (!size) break;
      out += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    rest = out;
  }
  return { status, body: rest };
}

/** Sends `parts`, then a byte every `trickleMs` (0: nothing more); ms until the server closes the connection. */
async function timeToClose(origin: string, parts: string[], trickleMs: number): Promise<number> {
  const { hostname, port } = new URL(origin);
  const socket = connect(Number(port), hostname);
  await new Promise((r) => socket.once('connect', r));
  const started = Date.now();
  for (const p of parts) socket.write(p);
  const timer = trickleMs > 0 ? setInterval(() => socket.writable && socket.write('x'), trickleMs) : null;
  socket.resume();
  await new Promise((r) => socket.once('close', r));
  if (timer) clearInterval(timer);
  return Date.now() - started;
}
