/**
 * An HTTP endpoint where a runner under test sends its manager callbacks. It records every call
 * and answers with a scripted status, so tests can see exactly what a runner sends and how it
 * retries. (The manager's real callback API is tested with the manager.)
 */
import { once } from 'node:events';
import { type IncomingMessage, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedCallback {
  kind: 'result' | 'progress' | 'other';
  path: string;
  authorization: string | undefined;
  body: Record<string, unknown>;
  status: number;
  at: number;
}

export interface CallbackRecorder {
  url: string;
  calls: RecordedCallback[];
  results(): RecordedCallback[];
  progress(): RecordedCallback[];
  /** Resolves with the first acknowledged (2xx) result. */
  acknowledgedResult(timeoutMs?: number): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

/** `respond(call, nthOfItsKind)` -> HTTP status; default 200. */
export async function startCallbackRecorder(
  respond: (call: Omit<RecordedCallback, 'status'>, n: number) => number = () => 200,
): Promise<CallbackRecorder> {
  const calls: RecordedCallback[] = [];
  const waiters: Array<(body: Record<string, unknown>) => void> = [];
  const server = createServer((req, res) => {
    void readJson(req).then((body) => {
      const path = req.url ?? '';
      const kind = path.endsWith('/result') ? 'result' : path.endsWith('/progress') ? 'progress' : 'other';
      const partial = { kind, path, authorization: req.headers.authorization, body, at: Date.now() } as const;
      const status = respond(partial, calls.filter((c) => c.kind === kind).length);
      calls.push({ ...partial, status });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(status < 300 ? { ok: true } : { error: 'Scripted', message: `scripted ${status}` }));
      if (kind === 'result' && status < 300) for (const w of waiters.splice(0)) w(body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    results: () => calls.filter((c) => c.kind === 'result'),
    progress: () => calls.filter((c) => c.kind === 'progress'),
    acknowledgedResult(timeoutMs = 60_000) {
      const done = calls.find((c) => c.kind === 'result' && c.status < 300);
      if (done) return Promise.resolve(done.body);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no acknowledged result within ${timeoutMs} ms`)), timeoutMs);
        waiters.push((b) => {
          clearTimeout(timer);
          resolve(b);
        });
      });
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}
