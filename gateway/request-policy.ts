/**
 * What a job may ask the model: a Responses API request checked against an allowlist and
 * rebuilt from the parsed, checked object, so the upstream receives exactly what was checked (a
 * duplicate `"model"` key, or any field not listed here, never reaches it). Pure.
 *
 * Where the allowlist comes from: the requests the pinned Codex CLI (0.169.0, package.json)
 * sends, recorded from the real binary against the scripted model (shell and apply_patch tool
 * calls, their outputs, the final message, --output-schema; auto-compaction, checked by hand
 * with `-c model_auto_compact_token_limit=50`, sends the same fields). The real Codex CLI runs
 * through the gateway in test/integration/gateway.test.ts ("the real Codex CLI works through
 * it") and in every job of the real-node suites, and fails there, the gateway's message naming
 * the field, if codex sends anything this module refuses. The output-item fields codex echoes
 * back from the real API (assistant messages' `phase`, output_text `annotations`/`logprobs`,
 * reasoning items) are taken from the Responses API reference. When codex is upgraded: run
 * those tests; a new field they name is added here only if it neither makes the provider fetch
 * or call anything, nor reads stored data, nor escapes the budget.
 *
 * What is refused, and why (each with its own code, which also ends the job: see errors.ts):
 *   - hosted tools (web_search, file_search, code_interpreter, mcp, image_generation,
 *     computer_use_preview, tool_search, ...), and their call items in the input, unless the
 *     cluster's config names the tool (PAGEWRIGHT_GATEWAY_ALLOWED_HOSTED_TOOLS):
 *     HostedToolNotAllowed. A hosted tool makes the provider reach places the agent names
 *     (around the pod's NetworkPolicy) or read the organisation's data;
 *   - input parts that make the provider fetch a URL or read a stored file (input_image by URL
 *     or file_id, input_file, input_audio) and item_reference: InputNotAllowed (inline
 *     `data:image/` images, which codex's view_image sends, pass);
 *   - background, previous_response_id, conversation, prompt (stored responses, conversations
 *     and prompts: other jobs' data, and a background response carries no usage), and every
 *     field not listed: RequestNotAllowed.
 * What is set rather than taken from the client: `store` is always false, `service_tier` is the
 * config's (or absent), and `max_output_tokens` is clamped to what the job's budget has left.
 */
import { z } from 'zod';
import { GatewayError } from './errors.js';

export interface RequestPolicy {
  /** The job's model (the credential's). */
  model: string;
  /** Hosted tool types the cluster allows (default none). */
  allowedHostedTools: ReadonlySet<string>;
  /** The service tier every request gets, or none. */
  serviceTier?: string | undefined;
  /** The most output tokens this request may produce (what the budget has left). */
  maxOutputTokens: number;
}

/** The request as it goes upstream, and the output tokens it may spend. */
export interface AdmittedRequest {
  body: Record<string, unknown>;
  maxOutputTokens: number;
}

/** Input items that only a hosted tool produces, by the tool whose config allows them. */
const HOSTED_TOOL_ITEMS: Record<string, string> = {
  web_search_call: 'web_search',
  file_search_call: 'file_search',
  code_interpreter_call: 'code_interpreter',
  image_generation_call: 'image_generation',
  computer_call: 'computer_use_preview',
  computer_call_output: 'computer_use_preview',
  mcp_call: 'mcp',
  mcp_list_tools: 'mcp',
  mcp_approval_request: 'mcp',
  mcp_approval_response: 'mcp',
  local_shell_call: 'local_shell',
  local_shell_call_output: 'local_shell',
  shell_call: 'shell',
  shell_call_output: 'shell',
  apply_patch_call: 'apply_patch',
  apply_patch_call_output: 'apply_patch',
  tool_search_call: 'tool_search',
  tool_search_output: 'tool_search',
};
/** The aliases a hosted tool's items answer to (web_search_preview produces web_search_call items). */
const HOSTED_TOOL_ALIASES: Record<string, string[]> = { web_search: ['web_search_preview', 'web_search_preview_2025_03_11'] };

/** Fields of the Responses API that read stored data or escape the budget: named in the refusal. */
const REFUSED_FIELDS: Record<string, string> = {
  background: 'a background response runs detached from this call and reports no usage to it',
  previous_response_id: "it reads a stored response (possibly another job's)",
  conversation: "it reads a stored conversation (possibly another job's)",
  prompt: 'it runs a stored prompt of the organisation',
};

const MIN_OUTPUT_TOKENS = 16;

// --- the pieces of a request, as codex sends them ---------------------------------------------

const text = z.string();
const id = z.string().max(512);
const name = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'not a tool name');
/** Free JSON (a tool's parameters schema, a JSON schema for the output, annotations): depth is bounded by json-shape.ts before parsing. */
const json = z.json();
const status = z.enum(['in_progress', 'completed', 'incomplete']);

const inputText = z.strictObject({ type: z.literal('input_text'), text });
const outputText = z.strictObject({
  type: z.literal('output_text'),
  text,
  annotations: z.array(json).optional(),
  logprobs: z.array(json).optional(),
});
const refusal = z.strictObject({ type: z.literal('refusal'), refusal: text });
/** Inline images only (codex's view_image sends `data:image/...;base64,`): a URL would be fetched by the provider. */
const inputImage = z.strictObject({
  type: z.literal('input_image'),
  image_url: z.string().startsWith('data:image/', 'only inline data:image/ URLs'),
  detail: z.enum(['auto', 'low', 'high', 'original']).optional(),
});
const messagePart = z.discriminatedUnion('type', [inputText, outputText, refusal, inputImage]);
const toolOutput = z.union([text, z.array(z.discriminatedUnion('type', [inputText, inputImage]))]);

const INPUT_ITEMS = {
  message: z.strictObject({
    type: z.literal('message').optional(),
    id: id.optional(),
    role: z.enum(['user', 'assistant', 'system', 'developer']),
    content: z.union([text, z.array(messagePart)]),
    status: status.optional(),
    phase: z.string().max(64).optional(),
  }),
  reasoning: z.strictObject({
    type: z.literal('reasoning'),
    id: id.optional(),
    summary: z.array(z.strictObject({ type: z.literal('summary_text'), text })),
    content: z.array(z.strictObject({ type: z.literal('reasoning_text'), text })).nullish(),
    encrypted_content: z.string().nullish(),
    status: status.optional(),
  }),
  function_call: z.strictObject({
    type: z.literal('function_call'),
    id: id.optional(),
    call_id: id,
    name,
    arguments: text,
    namespace: z.string().max(128).optional(),
    status: status.optional(),
  }),
  function_call_output: z.strictObject({
    type: z.literal('function_call_output'),
    id: id.optional(),
    call_id: id,
    output: toolOutput,
    status: status.optional(),
  }),
  custom_tool_call: z.strictObject({
    type: z.literal('custom_tool_call'),
    id: id.optional(),
    call_id: id,
    name,
    input: text,
    status: status.optional(),
  }),
  custom_tool_call_output: z.strictObject({
    type: z.literal('custom_tool_call_output'),
    id: id.optional(),
    call_id: id,
    output: toolOutput,
  }),
} as const;

const TOOLS = {
  function: z.strictObject({
    type: z.literal('function'),
    name,
    description: text.optional(),
    strict: z.boolean().nullish(),
    parameters: json.nullish(),
  }),
  custom: z.strictObject({
    type: z.literal('custom'),
    name,
    description: text.optional(),
    format: z
      .discriminatedUnion('type', [
        z.strictObject({ type: z.literal('text') }),
        z.strictObject({ type: z.literal('grammar'), syntax: z.enum(['lark', 'regex']), definition: text }),
      ])
      .optional(),
  }),
} as const;

const TOP_LEVEL = z.strictObject({
  model: z.string(),
  stream: z.boolean().optional(),
  instructions: text.nullish(),
  input: z.union([text, z.array(z.unknown())]),
  tools: z.array(z.unknown()).optional(),
  tool_choice: z
    .union([
      z.enum(['auto', 'none', 'required']),
      z.strictObject({ type: z.literal('function'), name }),
      z.strictObject({ type: z.literal('custom'), name }),
    ])
    .optional(),
  parallel_tool_calls: z.boolean().optional(),
  reasoning: z
    .strictObject({
      effort: z.enum(['none', 'minimal', 'low', 'medium', 'high', 'xhigh']).nullish(),
      summary: z.enum(['auto', 'concise', 'detailed', 'none']).nullish(),
    })
    .nullish(),
  // set below, whatever the client sent
  store: z.boolean().optional(),
  service_tier: z.string().max(64).nullish(),
  max_output_tokens: z.number().int().positive().nullish(),
  include: z.array(z.literal('reasoning.encrypted_content')).optional(),
  prompt_cache_key: z.string().max(1024).optional(),
  text: z
    .strictObject({
      verbosity: z.enum(['low', 'medium', 'high']).nullish(),
      format: z
        .discriminatedUnion('type', [
          z.strictObject({ type: z.literal('text') }),
          z.strictObject({ type: z.literal('json_object') }),
          z.strictObject({
            type: z.literal('json_schema'),
            name: z.string().max(128).optional(),
            description: text.optional(),
            strict: z.boolean().nullish(),
            schema: json,
          }),
        ])
        .optional(),
    })
    .optional(),
  /** codex's turn metadata (ids, its own settings): strings only. */
  client_metadata: z.record(z.string().max(256), z.string().max(16_384)).optional(),
});

// --- the check ----------------------------------------------------------------------------------

/** The request rebuilt from what was checked, or a GatewayError naming the first thing refused. */
export function admitRequest(raw: unknown, policy: RequestPolicy): AdmittedRequest {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new GatewayError('BadRequest', 'the body is not a JSON object');
  const model = (raw as { model?: unknown }).model;
  if (typeof model !== 'string') throw new GatewayError('BadRequest', 'the request names no model');
  if (model !== policy.model)
    throw new GatewayError('ModelNotAllowed', `this job may use model ${policy.model} only, not ${JSON.stringify(model)}`);
  for (const [field, why] of Object.entries(REFUSED_FIELDS)) {
    if (Object.hasOwn(raw, field)) throw new GatewayError('RequestNotAllowed', `the field ${field} is refused: ${why}`);
  }
  const top = checked(TOP_LEVEL, raw, '');
  const body: Record<string, unknown> = { ...top };
  if (Array.isArray(top.input)) body.input = top.input.map((item, i) => inputItem(item, `input[${i}]`, policy));
  if (top.tools) body.tools = top.tools.map((tool, i) => toolOf(tool, `tools[${i}]`, policy));
  body.store = false;
  delete body.service_tier;
  if (policy.serviceTier) body.service_tier = policy.serviceTier;
  const maxOutputTokens = Math.min(top.max_output_tokens ?? Number.POSITIVE_INFINITY, policy.maxOutputTokens);
  if (maxOutputTokens < MIN_OUTPUT_TOKENS)
    throw new GatewayError('LLMBudgetExceeded', `budget exceeded: ${policy.maxOutputTokens} output tokens are left for this job`);
  body.max_output_tokens = maxOutputTokens;
  return { body, maxOutputTokens };
}

function inputItem(item: unknown, at: string, policy: RequestPolicy): unknown {
  const type = typeOf(item) ?? 'message';
  const hostedBy = HOSTED_TOOL_ITEMS[type];
  if (hostedBy !== undefined) {
    if (hostedAllowed(hostedBy, policy)) return item;
    throw new GatewayError(
      'HostedToolNotAllowed',
      `${at}: a ${type} item belongs to the hosted tool ${hostedBy}, which this cluster does not allow`,
    );
  }
  if (type === 'item_reference') throw new GatewayError('InputNotAllowed', `${at}: item_reference reads a stored item`);
  const schema = INPUT_ITEMS[type as keyof typeof INPUT_ITEMS];
  if (!schema) throw new GatewayError('RequestNotAllowed', `${at}: input items of type ${JSON.stringify(type)} are not forwarded`);
  refuseFetchingParts(item, at);
  return checked(schema, item, at);
}

/** input_image by URL or file id, input_file, input_audio: the provider would fetch or read them. */
function refuseFetchingParts(item: unknown, at: string): void {
  const o = item as { content?: unknown; output?: unknown };
  const parts = Array.isArray(o.content) ? o.content : Array.isArray(o.output) ? o.output : [];
  parts.forEach((part: unknown, i) => {
    const where = `${at}.${Array.isArray(o.content) ? 'content' : 'output'}[${i}]`;
    const p = (part ?? {}) as { type?: unknown; image_url?: unknown; file_id?: unknown };
    if (p.type === 'input_file' || p.type === 'input_audio')
      throw new GatewayError('InputNotAllowed', `${where}: ${p.type} parts are not forwarded (the provider would read a file or a URL)`);
    if (p.type === 'input_image') {
      if (p.file_id !== undefined) throw new GatewayError('InputNotAllowed', `${where}: an input_image by file_id reads a stored file`);
      if (typeof p.image_url !== 'string' || !p.image_url.startsWith('data:image/'))
        throw new GatewayError(
          'InputNotAllowed',
          `${where}: an input_image must be inline (data:image/...), not a URL the provider fetches`,
        );
    }
  });
}

function toolOf(tool: unknown, at: string, policy: RequestPolicy): unknown {
  const type = typeOf(tool);
  if (type === undefined) throw new GatewayError('RequestNotAllowed', `${at}: a tool without a type`);
  const schema = TOOLS[type as keyof typeof TOOLS];
  if (schema) return checked(schema, tool, at);
  if (hostedAllowed(type, policy)) return tool;
  throw new GatewayError(
    'HostedToolNotAllowed',
    `${at}: the hosted tool ${type} is not allowed on this cluster (only function and custom tools)`,
  );
}

function hostedAllowed(type: string, policy: RequestPolicy): boolean {
  if (policy.allowedHostedTools.has(type)) return true;
  return Object.entries(HOSTED_TOOL_ALIASES).some(([tool, aliases]) => aliases.includes(type) && policy.allowedHostedTools.has(tool));
}

function typeOf(value: unknown): string | undefined {
  const type = (value as { type?: unknown } | null)?.type;
  return typeof type === 'string' ? type : undefined;
}

function checked<T extends z.ZodType>(schema: T, value: unknown, at: string): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = [at, ...(issue?.path ?? []).map(String)].filter(Boolean).join('.');
  const what =
    issue?.code === 'unrecognized_keys'
      ? `the field(s) ${issue.keys.slice(0, 5).join(', ')}${issue.keys.length > 5 ? ` and ${issue.keys.length - 5} more` : ''} are not forwarded`
      : (issue?.message ?? 'not allowed');
  throw new GatewayError('RequestNotAllowed', `${path || 'the request'}: ${what}`);
}
