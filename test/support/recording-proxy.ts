/**
 * An HTTP proxy in front of a real service that records each request's method and path, and
 * that a test can hold (requests wait, unanswered, until released) or make lie: flip a byte of
 * a response body, or answer a request with another path's body under the ETag the client
 * expects. To count what a client fetched, to line up concurrent requests behind one, and to
 * feed a client bytes that are not what the server said they are.
 */
import { once } from 'node:events';
import { type IncomingMessage, type Server, type ServerResponse, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Transform } from 'node:stream';

export interface RecordingProxy {
  url: string;
  /** `METHOD path` of every request received, in order. */
  readonly requests: string[];
  /** How many requests matched `pattern` (against `METHOD path`). */
  count(pattern: RegExp): number;
  hold(): void;
  release(): void;
  /** Flip one byte in the bodies of responses whose request matches `pattern` (null: stop). */
  corrupt(pattern: RegExp | null): void;
  /** Answer requests matching `pattern` with the body of `path`, under the ETag `etag` (null: stop). */
  substitute(pattern: RegExp | null, path?: string, etag?: string): void;
  close(): Promise<void>;
}

export async function startRecordingProxy(targetUrl: string): Promise<RecordingProxy> {
  const target = new URL(targetUrl);
  const requests: string[] = [];
  let held = false;
  let waiting: Array<() => void> = [];
  let corrupting: RegExp | null = null;
  let substituting: { pattern: RegExp; path: string; etag: string } | null = null;

  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const line = `${req.method} ${req.url}`;
    const swap = substituting?.pattern.test(line) ? substituting : null;
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: swap ? swap.path : req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, swap ? { ...up.headers, etag: `"${swap.etag}"` } : up.headers);
        if (corrupting?.test(line)) {
          let flipped = false;
          const flip = new Transform({
            transform(chunk: Buffer, _enc, done) {
              if (!flipped && chunk.length > 0) {
                chunk[chunk.length - 1]! ^= 0x01;
                flipped = true;
              }
              done(null, chunk);
            },
          });
          up.pipe(flip).pipe(res);
        } else {
          up.pipe(res);
        }
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  };

  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (held) waiting.push(() => forward(req, res));
    else forward(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    count: (pattern) => requests.filter((r) => pattern.test(r)).length,
    hold() {
      held = true;
    },
    release() {
      held = false;
      const go = waiting;
      waiting = [];
      for (const f of go) f();
    },
    corrupt(pattern) {
      corrupting = pattern;
    },
    substitute(pattern, path, etag) {
      substituting = pattern && path && etag ? { pattern, path, etag } : null;
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
