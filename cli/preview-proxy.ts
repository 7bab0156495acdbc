/**
 * `pagewright preview`: a local HTTP server on 127.0.0.1 that shows a job's review page and
 * previews, or a site version as a website, by forwarding the browser's requests to the review
 * API (review.pagewright.dev) with the user's kubeconfig credentials, the way `kubectl proxy`
 * does but for these paths only.
 *
 * The browser is not trusted with anything, and what it loads is the agent's content (hostile,
 * README "Security"), so:
 *   - GET and HEAD only (405 otherwise): nothing reachable through here changes anything;
 *   - the Host header must be 127.0.0.1:PORT or localhost:PORT (421 otherwise): a page on
 *     another origin that rebinds its DNS name to 127.0.0.1 reaches this port, but under its
 *     own Host, and gets nothing;
 *   - only the paths of the one job (review, output/, base/, diff) or the one site version
 *     (files/) are forwarded, after dot segments are resolved; not jobs/JOB/link (a signed link
 *     is a credential), not another job, not the rest of the apiserver;
 *   - the request carries the user's credentials and a few content-negotiation and caching
 *     headers, never the browser's Cookie or Authorization; the answer loses Set-Cookie and
 *     WWW-Authenticate (no cookie is planted on 127.0.0.1, no login prompt invited), and keeps
 *     the rest unchanged, the isolation headers above all (Content-Security-Policy: sandbox,
 *     preview/headers.ts), so each preview keeps its opaque origin here too.
 * Pure routing and header rules are tested without a network (test/unit/cli-logic.test.ts).
 */
import { once } from 'node:events';
import { type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { type KubeTarget, kubeRequest } from './kube-context.js';
import { reviewPath } from './review-client.js';

export type PreviewTarget = { kind: 'job'; job: string } | { kind: 'site'; site: string; version: string };

/** Whether `host` (the Host header) names this server: 127.0.0.1 or localhost, on its port. */
export function hostAllowed(host: string | undefined, port: number): boolean {
  if (!host) return false;
  const h = host.toLowerCase();
  return h === `127.0.0.1:${port}` || h === `localhost:${port}`;
}

/** What the local server answers a path with: a redirect, a refusal, or the review API path to forward to. */
type Route = { kind: 'redirect'; location: string } | { kind: 'notFound' } | { kind: 'forward'; path: string };

const JOB_PAGES = /^(review(\/.*)?|output(\/.*)?|base(\/.*)?|diff)$/;

/** The local URL's path and query, as the review API path of `target` in `namespace`. */
export function previewRoute(target: PreviewTarget, namespace: string, url: string): Route {
  // an encoded slash or backslash would be decoded after the prefix check by someone else
  if (/%2f|%5c|\\/i.test(url)) return { kind: 'notFound' };
  let parsed: URL;
  try {
    parsed = new URL(url, 'http://preview.invalid');
  } catch {
    return { kind: 'notFound' };
  }
  if (parsed.origin !== 'http://preview.invalid') return { kind: 'notFound' };
  const rest = parsed.pathname.replace(/^\//, '');
  if (target.kind === 'job') {
    if (rest === '') return { kind: 'redirect', location: '/review' };
    if (!JOB_PAGES.test(rest)) return { kind: 'notFound' };
    return { kind: 'forward', path: reviewPath(namespace, `jobs/${target.job}/${rest}`) + parsed.search };
  }
  return { kind: 'forward', path: reviewPath(namespace, `sites/${target.site}/versions/${target.version}/files/${rest}`) + parsed.search };
}

/** The local URL a target is opened at. */
export function previewUrl(target: PreviewTarget, port: number): string {
  return `http://127.0.0.1:${port}/${target.kind === 'job' ? 'review' : ''}`;
}

/** The browser's headers that are forwarded: content negotiation and revalidation only. */
const FORWARDED_REQUEST = ['accept', 'accept-language', 'if-none-match', 'if-modified-since', 'range', 'if-range', 'user-agent'];

export function forwardedRequestHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARDED_REQUEST) {
    const v = headers[name];
    if (typeof v === 'string') out[name] = v;
  }
  return out;
}

/** Hop-by-hop headers, and what must not reach the browser from the apiserver. */
const DROPPED_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'set-cookie',
  'www-authenticate',
]);

/** The upstream answer's headers for the browser; an absolute Location into the forwarded prefix becomes local. */
export function forwardedResponseHeaders(headers: IncomingHttpHeaders, upstreamPrefix: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || DROPPED_RESPONSE.has(name)) continue;
    out[name] = value;
  }
  const location = out.location;
  if (typeof location === 'string') {
    const path = location.replace(/^https?:\/\/[^/]+/i, '');
    if (path.startsWith(upstreamPrefix)) out.location = `/${path.slice(upstreamPrefix.length)}`;
    else if (/^[a-z][a-z0-9+.-]*:|^\/\//i.test(location) || location.startsWith('/')) delete out.location;
  }
  return out;
}

/** The review API path that local `/` stands for. */
function upstreamPrefix(target: PreviewTarget, namespace: string): string {
  return target.kind === 'job'
    ? reviewPath(namespace, `jobs/${target.job}/`)
    : reviewPath(namespace, `sites/${target.site}/versions/${target.version}/files/`);
}

function plain(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(`${text}\n`);
}

export interface PreviewProxy {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Starts the local server on 127.0.0.1:`port` (0: a free one). */
export async function startPreviewProxy(o: {
  kube: KubeTarget;
  target: PreviewTarget;
  port: number;
  onError?: (line: string) => void;
}): Promise<PreviewProxy> {
  let port = o.port;
  const prefix = upstreamPrefix(o.target, o.kube.namespace);
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      o.onError?.(`preview: ${req.method} ${req.url}: ${(err as Error).message}`);
      if (!res.headersSent) plain(res, 502, 'the cluster could not be reached');
      else res.destroy();
    });
  });
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!hostAllowed(req.headers.host, port)) return plain(res, 421, `this server answers only to 127.0.0.1:${port} and localhost:${port}`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'only GET and HEAD are served', { allow: 'GET, HEAD' });
    const route = previewRoute(o.target, o.kube.namespace, req.url ?? '/');
    if (route.kind === 'redirect') return plain(res, 302, 'moved', { location: route.location });
    if (route.kind === 'notFound') return plain(res, 404, 'not part of this preview');
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    const up = await kubeRequest(o.kube, route.path, {
      method: req.method,
      headers: forwardedRequestHeaders(req.headers),
      signal: abort.signal,
    });
    res.writeHead(up.statusCode ?? 502, forwardedResponseHeaders(up.headers, prefix));
    await pipeline(up, res).catch(() => res.destroy());
  }
  server.listen(o.port, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  return {
    url: previewUrl(o.target, port),
    port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
