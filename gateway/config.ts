/** The model gateway's PAGEWRIGHT_* environment, validated once at start-up (README "Configuration"). */
import { z } from 'zod';
import { env, list, httpUrl, logLevel, port, positiveInt } from '../common/config.js';
import { MIN_SECRET_BYTES } from '../common/tokens.js';
import { GATEWAY_DEFAULTS } from './app.js';

const secret = (what: string) => z.string().min(MIN_SECRET_BYTES, `must be at least ${MIN_SECRET_BYTES} characters (${what})`);

export const gatewayConfigSpec = {
  port: env('GATEWAY_PORT', port(8085)),
  host: env('GATEWAY_HOST', z.string().default('0.0.0.0')),
  /** The real model endpoint (OpenAI-compatible, `/responses` and `/models` under it). */
  upstreamUrl: env('LLM_URL', httpUrl().default('https://api.openai.com/v1')),
  /** The real key: the gateway is the only holder. */
  llmKey: env('LLM_KEY', z.string().min(1), { secret: true }),
  /** Verifies the per-attempt credentials the manager signs (common/gateway-credential.ts). */
  credentialSecret: env('GATEWAY_SECRET', secret('the key of gateway credentials'), { secret: true }),
  /** Where usage goes (the manager's POST /jobs/{id}/usage), and the token it accepts from us. */
  managerUrl: env('MANAGER_URL', httpUrl()),
  reportToken: env('GATEWAY_REPORT_TOKEN', z.string().min(16, 'must be at least 16 characters'), { secret: true }),
  /** The namespace of the jobs whose attempts it serves (their live state comes from a watch). */
  watchNamespace: env('WATCH_NAMESPACE', z.string().optional()),
  /** The largest request body (codex re-sends the whole conversation every turn; the model's context window bounds it well below this). */
  maxRequestBytes: env('GATEWAY_MAX_REQUEST_BYTES', positiveInt(GATEWAY_DEFAULTS.maxRequestBytes)),
  /**
   * The memory request bodies may hold across every call in flight (each counts 6x its size:
   * bytes, parsed and re-serialised); past it, 503 with Retry-After. With the 512Mi pod limit of
   * deploy/k8s/gateway.yaml this leaves room for the process itself and the streams.
   */
  maxBufferedBytes: env('GATEWAY_MAX_BUFFERED_BYTES', positiveInt(GATEWAY_DEFAULTS.maxBufferedBytes)),
  /** Hosted tools (web_search, file_search, mcp, ...) requests may declare: none by default, since each reaches past the pod's NetworkPolicy or reads the organisation's data. Comma-separated tool types. */
  allowedHostedTools: env(
    'GATEWAY_ALLOWED_HOSTED_TOOLS',
    list()
      .optional()
      .transform((tools) => tools ?? []),
  ),
  /** The service tier every request gets (e.g. flex); unset: none is sent, whatever the client asks. */
  serviceTier: env(
    'GATEWAY_SERVICE_TIER',
    z
      .string()
      .regex(/^[a-z_]{1,32}$/, 'must be a service tier name')
      .optional(),
  ),
  /** The most output tokens one call may produce (less when the job's budget has less left; see GATEWAY_DEFAULTS). */
  maxOutputTokensPerCall: env('GATEWAY_MAX_OUTPUT_TOKENS_PER_CALL', positiveInt(GATEWAY_DEFAULTS.maxOutputTokensPerCall)),
  /** How long answers of GET /v1/models[/{id}] are served from the gateway's cache. */
  modelsCacheSeconds: env('GATEWAY_MODELS_CACHE_SECONDS', positiveInt(GATEWAY_DEFAULTS.modelsCacheSeconds)),
  /** Upstream: connect/headers timeout, and the longest silence inside a streamed body. */
  upstreamHeadersTimeoutMs: env('GATEWAY_UPSTREAM_HEADERS_TIMEOUT_MS', positiveInt(GATEWAY_DEFAULTS.upstreamHeadersTimeoutMs)),
  upstreamBodyTimeoutMs: env('GATEWAY_UPSTREAM_BODY_TIMEOUT_MS', positiveInt(GATEWAY_DEFAULTS.upstreamBodyTimeoutMs)),
  /** When the upstream's 429 names no Retry-After: the first backoff, doubled up to the cap. */
  rateLimitBaseMs: env('GATEWAY_RATE_LIMIT_BASE_MS', positiveInt(1000)),
  rateLimitMaxMs: env('GATEWAY_RATE_LIMIT_MAX_MS', positiveInt(60_000)),
  /** Server timeouts: request headers, the request body, idle keep-alive sockets. */
  headersTimeoutMs: env('GATEWAY_HEADERS_TIMEOUT_MS', positiveInt(30_000)),
  requestTimeoutMs: env('GATEWAY_REQUEST_TIMEOUT_MS', positiveInt(120_000)),
  keepAliveTimeoutMs: env('GATEWAY_KEEP_ALIVE_TIMEOUT_MS', positiveInt(65_000)),
  logLevel: env('LOG_LEVEL', logLevel()),
};
