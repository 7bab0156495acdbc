/**
 * What the gateway forwards, decided without a network: the route table on decoded paths
 * (gateway/routes.ts), the shape bound of a body before it is parsed (json-shape.ts), and the
 * Responses allowlist that rebuilds a request from what was checked (request-policy.ts). The
 * same attacks run against the real gateway process in test/integration/gateway-hostile.test.ts.
 */
import { expect } from 'chai';
import { PagewrightError } from '../../common/errors.js';
import { jsonShape } from '../../gateway/json-shape.js';
import { type RequestPolicy, admitRequest } from '../../gateway/request-policy.js';
import { matchRoute, upstreamPath } from '../../gateway/routes.js';

describe('gateway: routes on the decoded path', () => {
  it('matches exactly the three routes, and builds the upstream path from the route alone', () => {
    expect(matchRoute('POST', '/v1/responses')).to.deep.equal({ route: { name: 'responses' } });
    expect(matchRoute('GET', '/v1/models')).to.deep.equal({ route: { name: 'models' } });
    expect(matchRoute('GET', '/v1/models/gpt-5.5')).to.deep.equal({ route: { name: 'model', id: 'gpt-5.5' } });
    expect(matchRoute('GET', '/v1/models/ft:gpt-4o-mini:org:x:1')).to.deep.equal({
      route: { name: 'model', id: 'ft:gpt-4o-mini:org:x:1' },
    });
    expect(upstreamPath({ name: 'model', id: 'ft:gpt-4o-mini:org:x:1' })).to.equal('/models/ft%3Agpt-4o-mini%3Aorg%3Ax%3A1');
    expect(upstreamPath({ name: 'responses' })).to.equal('/responses');
  });

  it('matches nothing for traversal, encodings, case, trailing slashes, query strings and absolute-form targets', () => {
    const refused: Array<[string, string]> = [
      ['GET', '/v1/models/..\\files'],
      ['GET', '/v1/models/..%5Cfiles'],
      ['GET', '/v1/models/..%2Ffiles'],
      ['GET', '/v1/models/%2e%2e/files'],
      ['GET', '/v1/models/%2e%2e%5cresponses%5cresp_1'],
      ['GET', '/v1/models/%252e%252e'],
      ['GET', '/v1/models/..'],
      ['GET', '/v1/models/.'],
      ['GET', '/v1/models/a/b'],
      ['GET', '/v1/models/'],
      ['GET', '/v1//models'],
      ['GET', '/v1/files'],
      ['GET', '/v1/files/file-1/content'],
      ['GET', '/v1/responses/resp_1'],
      ['POST', '/v1/chat/completions'],
      ['GET', '/v1/vector_stores'],
      ['GET', '/v1/organization/users'],
      ['POST', '/V1/RESPONSES'],
      ['POST', '/v1/Responses'],
      ['POST', '/v1/responses/'],
      ['POST', '/v1/responses?stream=true'],
      ['GET', '/v1/models?after=x'],
      ['POST', '/v1/responses#x'],
      ['POST', 'http://api.openai.com/v1/responses'],
      ['POST', '//evil/v1/responses'],
      ['POST', '*'],
      ['POST', '/v1/responses/%00'],
      ['POST', '/v1/%72esponses/compact'],
      ['POST', '/v1/models/gpt-5.5'],
      ['GET', '/v1/responses'],
      ['DELETE', '/v1/models/gpt-5.5'],
      ['GET', '/v1/models/%E2%80%AEgpt'],
    ];
    for (const [method, target] of refused) expect(matchRoute(method, target).route, `${method} ${target}`).to.equal(null);
  });
});

describe('gateway: the shape of a body, before it is parsed', () => {
  const limits = { depth: 64, nodes: 1000 };
  it('counts depth and nodes (containers and members) outside strings, escapes included', () => {
    expect(jsonShape(Buffer.from('{"a":[1,{"b":"[[[{{{,,,"}],"c":"\\"[{,"}'), limits)).to.deep.equal({ depth: 3, nodes: 5 });
    expect(jsonShape(Buffer.from('"\\\\"'), limits)).to.deep.equal({ depth: 0, nodes: 0 });
    expect(jsonShape(Buffer.from('["\\\\",[["x"]]]'), limits)).to.deep.equal({ depth: 3, nodes: 4 });
  });
  it('stops at the first bound it passes', () => {
    expect(jsonShape(Buffer.from('['.repeat(100_000)), limits).depth).to.equal(65);
    expect(jsonShape(Buffer.from(`[${'[],'.repeat(5000)}[]]`), limits).nodes).to.equal(1001);
    expect(jsonShape(Buffer.from(`{${'"k":0,'.repeat(5000)}"k":0}`), limits).nodes).to.equal(1001);
  });
});

describe('gateway: the Responses allowlist (request-policy.ts)', () => {
  const policy: RequestPolicy = { model: 'gpt-5.5', allowedHostedTools: new Set(), maxOutputTokens: 5000 };
  /** A request as codex 0.169.0 sends it (fields and item shapes recorded from the real binary). */
  const codexRequest = () => ({
    model: 'gpt-5.5',
    stream: true,
    input: [
      { type: 'message', id: 'msg_1', role: 'developer', content: [{ type: 'input_text', text: 'You are Codex' }] },
      { type: 'message', id: 'msg_2', role: 'user', content: [{ type: 'input_text', text: 'Add a notice' }] },
      { type: 'function_call', status: 'completed', id: 'fc_1', name: 'exec_command', arguments: '{"cmd":"ls"}', call_id: 'c1' },
      { type: 'function_call_output', id: 'fco_1', call_id: 'c1', output: 'index.html' },
      { type: 'custom_tool_call', id: 'ctc_1', status: 'completed', call_id: 'c2', name: 'apply_patch', input: '*** Begin Patch' },
      { type: 'custom_tool_call_output', id: 'ctco_1', call_id: 'c2', output: 'Success' },
      {
        type: 'function_call_output',
        call_id: 'c3',
        output: [{ type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=' }],
      },
      { type: 'reasoning', id: 'rs_1', summary: [], encrypted_content: 'gAAA' },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'done', annotations: [] }], phase: 'final_answer' },
    ],
    tools: [
      { type: 'function', name: 'exec_command', description: 'Runs a command', strict: false, parameters: { type: 'object' } },
      {
        type: 'custom',
        name: 'apply_patch',
        description: 'patch',
        format: { type: 'grammar', syntax: 'lark', definition: 'start: x' },
      },
    ],
    tool_choice: 'auto',
    parallel_tool_calls: true,
    reasoning: { effort: 'medium' },
    store: false,
    include: ['reasoning.encrypted_content'],
    prompt_cache_key: '01a2',
    text: { verbosity: 'low', format: { type: 'json_schema', strict: true, name: 'final', schema: { type: 'object' } } },
    client_metadata: { turn_id: 't1', session_id: 's1' },
  });
  const refusal = (body: unknown, p: RequestPolicy = policy): { code: string; message: string } => {
    try {
      admitRequest(body, p);
    } catch (err) {
      if (err instanceof PagewrightError) return { code: err.code, message: err.message };
      throw err;
    }
    throw new Error('admitted');
  };
  const withTool = (tool: unknown) => ({ ...codexRequest(), tools: [...codexRequest().tools, tool] });
  const withInput = (item: unknown) => ({ ...codexRequest(), input: [...codexRequest().input, item] });
  const withPart = (part: unknown) => withInput({ type: 'message', role: 'user', content: [part] });

  it("admits codex's own request unchanged but for store, max_output_tokens and service_tier", () => {
    const { body, maxOutputTokens } = admitRequest(codexRequest(), policy);
    expect(body).to.deep.equal({ ...codexRequest(), store: false, max_output_tokens: 5000 });
    expect(maxOutputTokens).to.equal(5000);
  });

  it('rebuilds the request from what it checked: a duplicate key, unknown field or hosted tool never reaches upstream', () => {
    // JSON keeps the last "model": the check and the upstream see the same one
    const duplicate = JSON.parse('{"model":"gpt-5.5","input":"hi","model":"gpt-expensive"}');
    expect(refusal(duplicate).code).to.equal('ModelNotAllowed');
    const ok = admitRequest(JSON.parse('{"model":"gpt-expensive","input":"hi","model":"gpt-5.5"}'), policy);
    expect(JSON.stringify(ok.body)).to.equal('{"model":"gpt-5.5","input":"hi","store":false,"max_output_tokens":5000}');
  });

  it('refuses every hosted tool with its own code, unless the config names it', () => {
    for (const tool of [
      { type: 'web_search' },
      { type: 'web_search_preview' },
      { type: 'file_search', vector_store_ids: ['vs_other_job'] },
      { type: 'code_interpreter', container: { type: 'auto' } },
      { type: 'mcp', server_label: 'x', server_url: 'https://attacker.example/mcp' },
      { type: 'image_generation' },
      { type: 'computer_use_preview', display_width: 1, display_height: 1, environment: 'browser' },
      { type: 'tool_search', execution: 'client' },
      { type: 'namespace', name: 'multi_agent_v1', tools: [] },
      { type: 'local_shell' },
    ]) {
      const r = refusal(withTool(tool));
      expect(r.code, tool.type).to.equal('HostedToolNotAllowed');
      expect(r.message).to.contain(tool.type);
    }
    const allowed = admitRequest(withTool({ type: 'web_search' }), { ...policy, allowedHostedTools: new Set(['web_search']) });
    expect((allowed.body.tools as Array<{ type: string }>).map((t) => t.type)).to.include('web_search');
    // the items a hosted tool produced go with it
    expect(refusal(withInput({ type: 'web_search_call', id: 'ws_1', status: 'completed', action: {} })).code).to.equal(
      'HostedToolNotAllowed',
    );
    expect(refusal(withInput({ type: 'mcp_call', id: 'm1', server_label: 'x', name: 'n', arguments: '{}' })).code).to.equal(
      'HostedToolNotAllowed',
    );
    const preview = { ...policy, allowedHostedTools: new Set(['web_search']) };
    expect(() => admitRequest(withTool({ type: 'web_search_preview' }), preview), 'web_search allows its preview alias').to.not.throw();
    expect(() => admitRequest(withInput({ type: 'web_search_call', id: 'ws_1' }), preview)).to.not.throw();
  });

  it('refuses input the provider would fetch or read: URL and file-id images, files, audio, item references', () => {
    const cases: unknown[] = [
      { type: 'input_image', image_url: 'https://attacker.example/x.png' },
      { type: 'input_image', image_url: 'http://169.254.169.254/latest/meta-data' },
      { type: 'input_image', file_id: 'file-other-job' },
      { type: 'input_image', image_url: 'data:image/png;base64,AAAA', file_id: 'file-x' },
      { type: 'input_file', file_url: 'https://attacker.example/a.pdf' },
      { type: 'input_file', file_id: 'file-other-job' },
      { type: 'input_file', filename: 'a.txt', file_data: 'data:text/plain;base64,AAAA' },
      { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } },
    ];
    for (const part of cases) expect(refusal(withPart(part)).code, JSON.stringify(part)).to.equal('InputNotAllowed');
    expect(
      refusal(withInput({ type: 'function_call_output', call_id: 'c9', output: [{ type: 'input_image', image_url: 'https://x/y.png' }] }))
        .code,
    ).to.equal('InputNotAllowed');
    expect(refusal(withInput({ type: 'item_reference', id: 'msg_of_another_job' })).code).to.equal('InputNotAllowed');
  });

  it('refuses stored state and budget escapes by name, and any field it does not list', () => {
    for (const [field, value] of [
      ['background', true],
      ['previous_response_id', 'resp_other'],
      ['conversation', 'conv_other'],
      ['prompt', { id: 'pmpt_1' }],
    ] as const) {
      const r = refusal({ ...codexRequest(), [field]: value });
      expect([r.code, r.message.includes(field)], field).to.deep.equal(['RequestNotAllowed', true]);
    }
    for (const extra of [
      { metadata: { a: 'b' } },
      { truncation: 'auto' },
      { temperature: 2 },
      { user: 'x' },
      { include: ['file_search_call.results'] },
      { include: ['message.input_image.image_url'] },
      { tool_choice: { type: 'mcp', server_label: 'x' } },
      { text: { format: { type: 'json_schema', schema: {} }, extra: 1 } },
      { reasoning: { effort: 'medium', generate_summary: 'auto' } },
    ]) {
      expect(refusal({ ...codexRequest(), ...extra }).code, JSON.stringify(extra)).to.equal('RequestNotAllowed');
    }
    // inside items and tools too
    expect(refusal(withInput({ type: 'message', role: 'user', content: 'x', extra: 1 })).message).to.match(/input\[9\].*extra/);
    expect(refusal(withInput({ type: 'function_call', call_id: 'c', name: 'x', arguments: '{}', server_url: 'https://x' })).code).to.equal(
      'RequestNotAllowed',
    );
    expect(refusal(withTool({ type: 'function', name: 'f', parameters: {}, server_url: 'https://x' })).code).to.equal('RequestNotAllowed');
    expect(refusal(withInput({ type: 'something_new' })).code).to.equal('RequestNotAllowed');
  });

  it('forces store false, takes service_tier only from config, clamps max_output_tokens to the budget', () => {
    const stored = admitRequest({ ...codexRequest(), store: true, service_tier: 'priority', max_output_tokens: 100_000 }, policy);
    expect(stored.body.store).to.equal(false);
    expect(stored.body).to.not.have.property('service_tier');
    expect(stored.body.max_output_tokens).to.equal(5000);
    const flex = admitRequest({ ...codexRequest(), service_tier: 'priority' }, { ...policy, serviceTier: 'flex' });
    expect(flex.body.service_tier).to.equal('flex');
    expect(admitRequest({ ...codexRequest(), max_output_tokens: 300 }, policy).maxOutputTokens, 'a smaller ask stays').to.equal(300);
    const spent = refusal(codexRequest(), { ...policy, maxOutputTokens: 15 });
    expect(spent.code).to.equal('LLMBudgetExceeded');
  });
});
