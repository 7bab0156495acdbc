/**
 * Every server's timeouts, set explicitly (DESIGN: idle and request timeouts on every server):
 * a client that sends its headers too slowly, takes too long over its body, or keeps an idle
 * connection open is disconnected, so no peer can hold sockets and memory for ever.
 */
import type { Server } from 'node:http';

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

export function applyServerTimeouts(server: Server, t: ServerTimeouts): Server {
  server.headersTimeout = t.headersMs;
  server.requestTimeout = t.requestMs;
  server.keepAliveTimeout = t.keepAliveMs;
  return server;
}
