/**
 * A scripted stand-in for the OpenAI Responses API: the demo model (`pagewright run` without a
 * key, `pagewright demo-model` in a dev cluster) and the model of every test. The real `codex`
 * binary talks to it exactly as to OpenAI (POST {base}/responses, streamed as server-sent events)
 * and really runs the tool calls the script answers with. The openai SDK's preflight
 * (GET {base}/models/{id}, and GET {base}/models) is answered too, by default with 200 for any
 * model; the options play other endpoints' models routes (an error, a list-only endpoint, a
 * given list). Every request is recorded for assertions.
 *
 * Only the model is scripted: a real one costs money and needs the internet. Codex, its tools and
 * the files they change are real. It is product code (the manager image serves it as the demo),
 * so it lives under cli/ and the tests import it from here: nothing outside test/ imports test/.
 */
import { randomBytes } from 'node:crypto';
import { DEFAULT_MODEL } from '../common/models.js';
import { once } from 'node:events';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One model answer. */
export type ModelTurn =
  | { kind: 'tools'; calls: ToolCall[] }
  | { kind: 'message'; text: string }
  /** HTTP error status (401, 429, 500, ...) with an OpenAI-style error body (and a Retry-After header, for 429s). */
  | { kind: 'error'; status: number; message?: string; retryAfter?: string }
  /** Accept the request and never answer (the connection stays open until close()). */
  | { kind: 'hang' }
  /** Destroy the connection without an answer. */
  | { kind: 'drop' }
  | { kind: 'delay'; ms: number; then: ModelTurn };

type ToolCall =
  /** Codex's shell tool (exec_command); runs `cmd` with bash -lc in the work dir. */
  | { type: 'shell'; cmd: string; yieldTimeMs?: number }
  /** A patch in the apply_patch format, sent as codex's freeform apply_patch tool. */
  | { type: 'apply_patch'; patch: string };

export interface TurnContext {
  request: RecordedRequest;
  /** Assistant rounds already in this conversation (0 for the first request). */
  round: number;
  /** Outputs of earlier tool calls in this conversation, oldest first. */
  toolOutputs: string[];
  /** The user's prompt (last user message text). */
  prompt: string;
  /** Every user message text of the conversation, oldest first (a resumed thread has several prompts). */
  prompts: string[];
}

export type ModelScript = ModelTurn[] | ((ctx: TurnContext) => ModelTurn | Promise<ModelTurn>);

export interface ModelServerOptions {
  script: ModelScript;
  /** Bearer key the server expects; any other gets 401. Default: a random key (see .key). */
  apiKey?: string;
  /** Status for both models routes, GET /models/{id} (the preflight) and GET /models; default 200. */
  modelsStatus?: number;
  /**
   * Status for GET /models/{id} alone, overriding modelsStatus there: e.g. 404 or 405 for an
   * endpoint that only lists its models.
   */
  retrieveStatus?: number;
  /**
   * The models served: what GET /models lists, and GET /models/{id} answers 404 for any other.
   * Default: GET /models lists DEFAULT_MODEL and GET /models/{id} answers any id.
   */
  models?: string[];
  /** Awaited before answering either models route (lets a test hold a runner in its preflight). */
  beforeModels?: () => Promise<void>;
  /** Called with every request as it is recorded (the demo model's access log). */
  onRequest?: (request: RecordedRequest) => void;
  /** Bind address; default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port (see .url). */
  port?: number;
}

export interface RecordedRequest {
  method: string;
  /** The request target as it arrived (path and query, undecoded). */
  url: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

export interface ModelServer {
  /** Base URL for codex's provider and the openai SDK, e.g. http://127.0.0.1:PORT/v1 */
  url: string;
  key: string;
  requests: RecordedRequest[];
  /** The POST /responses bodies, in order. */
  responseRequests(): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

type InputItem = { type?: string; role?: string; content?: unknown; output?: unknown; call_id?: string };

export async function startModelServer(opts: ModelServerOptions): Promise<ModelServer> {
  const key = opts.apiKey ?? `sk-scripted-${randomBytes(8).toString('hex')}`;
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  let ids = 0;
  const nextId = (prefix: string) => `${prefix}_${++ids}`;

  const server = createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, 500, `scripted model server failed: ${String(err)}`);
      else res.destroy();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = text;
    }
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const recorded: RecordedRequest = { method: req.method ?? 'GET', url: req.url ?? '/', path, headers: req.headers, body };
    requests.push(recorded);
    opts.onRequest?.(recorded);

    if (req.headers.authorization !== `Bearer ${key}`) {
      sendError(res, 401, 'Incorrect API key provided.', 'invalid_api_key');
      return;
    }
    const modelMatch = /^\/v1\/models(?:\/([^/]+))?$/.exec(path);
    if (req.method === 'GET' && modelMatch) {
      await opts.beforeModels?.();
      const id = modelMatch[1] === undefined ? null : decodeURIComponent(modelMatch[1]);
      const status = (id !== null ? opts.retrieveStatus : undefined) ?? opts.modelsStatus ?? 200;
      if (status !== 200) return sendError(res, status, `scripted models endpoint answers ${status}`);
      if (id !== null && opts.models && !opts.models.includes(id))
        return sendError(res, 404, `The model '${id}' does not exist`, 'model_not_found');
      const model = (id: string) => ({ id, object: 'model', created: 1_700_000_000, owned_by: 'pagewright-scripted' });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(id !== null ? model(id) : { object: 'list', data: (opts.models ?? [DEFAULT_MODEL]).map(model) }));
      return;
    }
    if (req.method !== 'POST' || path !== '/v1/responses') {
      sendError(res, 404, `scripted model server has no ${req.method} ${path}`);
      return;
    }
    const input = ((body as { input?: InputItem[] } | null)?.input ?? []) as InputItem[];
    const ctx: TurnContext = {
      request: recorded,
      round: countRounds(input),
      toolOutputs: toolOutputs(input),
      prompt: lastUserText(input),
      prompts: userTexts(input),
    };
    const turn = Array.isArray(opts.script) ? opts.script[ctx.round] : await opts.script(ctx);
    await answer(res, turn ?? { kind: 'error', status: 500, message: `script has no turn ${ctx.round}` });
  }

  async function answer(res: ServerResponse, turn: ModelTurn): Promise<void> {
    switch (turn.kind) {
      case 'delay':
        await new Promise((r) => setTimeout(r, turn.ms));
        return answer(res, turn.then);
      case 'hang':
        return; // the socket is destroyed by close()
      case 'drop':
        res.socket?.destroy();
        return;
      case 'error':
        if (turn.retryAfter !== undefined) res.setHeader('retry-after', turn.retryAfter);
        sendError(res, turn.status, turn.message ?? `scripted error ${turn.status}`);
        return;
      case 'message':
      case 'tools': {
        const responseId = nextId('resp');
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        const send = (type: string, data: Record<string, unknown>) =>
          res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
        send('response.created', { response: { id: responseId } });
        const items =
          turn.kind === 'message' ? [messageItem(nextId('msg'), turn.text)] : turn.calls.map((c) => callItem(nextId('call'), c));
        for (const [output_index, item] of items.entries()) send('response.output_item.done', { output_index, item });
        send('response.completed', {
          response: {
            id: responseId,
            usage: {
              input_tokens: 100,
              output_tokens: 20,
              total_tokens: 120,
              input_tokens_details: { cached_tokens: 0 },
              output_tokens_details: { reasoning_tokens: 0 },
            },
          },
        });
        res.end();
        return;
      }
    }
  }

  const host = opts.host ?? '127.0.0.1';
  server.listen(opts.port ?? 0, host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  // a wildcard bind is reached on loopback from this machine
  const urlHost = host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${urlHost}:${port}/v1`,
    key,
    requests,
    responseRequests: () =>
      requests.filter((r) => r.method === 'POST' && r.path === '/v1/responses').map((r) => r.body as Record<string, unknown>),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function sendError(res: ServerResponse, status: number, message: string, code: string | null = null): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type: status === 401 ? 'invalid_request_error' : 'server_error', param: null, code } }));
}

function messageItem(id: string, text: string) {
  return { type: 'message', role: 'assistant', id, status: 'completed', content: [{ type: 'output_text', text, annotations: [] }] };
}

function callItem(callId: string, call: ToolCall) {
  if (call.type === 'shell') {
    return {
      type: 'function_call',
      id: `fc_${callId}`,
      call_id: callId,
      name: 'exec_command',
      arguments: JSON.stringify({ cmd: call.cmd, yield_time_ms: call.yieldTimeMs ?? 10_000 }),
      status: 'completed',
    };
  }
  return { type: 'custom_tool_call', id: `ctc_${callId}`, call_id: callId, name: 'apply_patch', input: call.patch, status: 'completed' };
}

const CALL_TYPES = new Set(['function_call', 'custom_tool_call', 'local_shell_call']);

/**
 * Earlier assistant rounds: a tool call that does not directly follow another call starts a
 * round (codex re-sends the whole history each turn: calls, then their outputs).
 */
function countRounds(input: InputItem[]): number {
  let rounds = 0;
  let previousWasCall = false;
  for (const item of input) {
    const isCall = item.type !== undefined && CALL_TYPES.has(item.type);
    if (isCall && !previousWasCall) rounds++;
    previousWasCall = isCall;
  }
  return rounds;
}

function toolOutputs(input: InputItem[]): string[] {
  return input
    .filter((i) => i.type === 'function_call_output' || i.type === 'custom_tool_call_output')
    .map((i) => (typeof i.output === 'string' ? i.output : JSON.stringify(i.output)));
}

function userTexts(input: InputItem[]): string[] {
  return input.flatMap((item) =>
    item?.role === 'user' && Array.isArray(item.content)
      ? (item.content as Array<{ type?: string; text?: string }>).filter((c) => c.type === 'input_text').map((c) => c.text ?? '')
      : [],
  );
}

function lastUserText(input: InputItem[]): string {
  for (let i = input.length - 1; i >= 0; i--) {
    const item = input[i];
    if (item?.role !== 'user' || !Array.isArray(item.content)) continue;
    const texts = (item.content as Array<{ type?: string; text?: string }>).filter((c) => c.type === 'input_text').map((c) => c.text ?? '');
    const last = texts.at(-1);
    if (last !== undefined) return last;
  }
  return '';
}
