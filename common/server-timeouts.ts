/**
 * Every server's timeouts, set explicitly (DESIGN: idle and request timeouts on every server):
 * a client that sends its headers too slowly, takes too long over its body, or keeps an idle
 * connection open is disconnected, so no peer can hold sockets and memory for ever.
 *
 * Node checks the headers and request timeouts only every `connectionsCheckingInterval` (30 s
 * by default, and settable only when the server is created), so a 10 s request timeout fired
 * after 13 to 40 s and a 5 s headers timeout after 30 s (measured on the gateway). Servers are
 * therefore created here, with the interval a quarter of the shorter timeout: each fires within
 * a quarter of its value.
 */
import { once } from 'node:events';
import { type RequestListener, type Server, createServer } from 'node:http';
import { type ServerOptions as TlsServerOptions, createServer as createTlsServer } from 'node:https';

export interface ServerTimeouts {
  /** All request headers must arrive within this. */
  headersMs: number;
  /** The whole request (headers and body) must arrive within this. */
  requestMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveMs: number;
}

/** For APIs with small bodies (callbacks, status, the agent server). */
export const SMALL_API_TIMEOUTS: ServerTimeouts = { headersMs: 10_000, requestMs: 30_000, keepAliveMs: 5_000 };

/** How often Node looks for requests past their timeouts: a quarter of the shorter one (at least 50 ms, at most Node's 30 s). */
function checkingIntervalMs(t: Pick<ServerTimeouts, 'headersMs' | 'requestMs'>): number {
  return Math.min(30_000, Math.max(50, Math.floor(Math.min(t.headersMs, t.requestMs) / 4)));
}

/** An HTTP server whose timeouts fire on time; HTTPS with `tls`. */
export function createTimedServer(handler: RequestListener, t: ServerTimeouts, tls?: TlsServerOptions): Server {
  // headersTimeout must not exceed requestTimeout (Node refuses it otherwise)
  const options = {
    headersTimeout: Math.min(t.headersMs, t.requestMs),
    requestTimeout: t.requestMs,
    keepAliveTimeout: t.keepAliveMs,
    connectionsCheckingInterval: checkingIntervalMs(t),
  };
  return tls ? createTlsServer({ ...tls, ...options }, handler) : createServer(options, handler);
}

/** createTimedServer, listening on port and host. */
export async function listen(handler: RequestListener, port: number, host: string, t: ServerTimeouts): Promise<Server> {
  const server = createTimedServer(handler, t);
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}
