/**
 * A real HTTPS webhook receiver for the webhook tests: node:https with a certificate from the
 * test CA (test/support/pki.ts), listening on every address of this machine (`::`, dual stack),
 * recording each request with the TLS server name the client sent and the local address it
 * reached, and answering from a script of responders (default 204).
 *
 * verifyStandardWebhook re-implements the receiver's side of the Standard Webhooks signature
 * from the spec text (spec/standard-webhooks.md, "Signature scheme", "Webhook headers",
 * "Verifying signatures"), independently of manager/webhooks/signature.ts.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:https';
import { networkInterfaces } from 'node:os';
import type { TLSSocket } from 'node:tls';
import { waitFor } from './processes.js';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** SNI the client sent (https only). */
  servername: string | undefined;
  /** The address of this machine the connection reached (IPv4-mapped forms unwrapped). */
  localAddress: string;
  at: number;
}

export type Responder = (req: ReceivedRequest, res: ServerResponse) => void;

export const answer =
  (status: number, headers: Record<string, string> = {}, body = ''): Responder =>
  (_req, res) => {
    res.writeHead(status, headers).end(body);
  };

/** Never answers (the connection is closed when the receiver stops). */
export const hang: Responder = () => undefined;

const unmap = (a: string | undefined) => (a ?? '').replace(/^::ffff:/, '');

export class WebhookReceiver {
  readonly received: ReceivedRequest[] = [];
  #script: Responder[] = [];
  #fallback: Responder = answer(204);

  private constructor(
    private readonly server: ReturnType<typeof createServer> | ReturnType<typeof createHttpServer>,
    readonly port: number,
  ) {}

  /** An HTTPS receiver with this certificate, on `host` (default every address). */
  static async https(tls: { cert: string; key: string }, host = '::'): Promise<WebhookReceiver> {
    const server = createServer({ cert: tls.cert, key: tls.key });
    return WebhookReceiver.#listen(server, host);
  }

  /** A plain HTTP receiver (for PAGEWRIGHT_WEBHOOK_ALLOW_HTTP). */
  static async http(host = '127.0.0.1'): Promise<WebhookReceiver> {
    return WebhookReceiver.#listen(createHttpServer(), host);
  }

  static async #listen(server: ReturnType<typeof createServer> | ReturnType<typeof createHttpServer>, host: string) {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    const addr = server.address();
    const receiver = new WebhookReceiver(server, typeof addr === 'object' && addr ? addr.port : 0);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => receiver.#handle(req, res));
    return receiver;
  }

  /** The next requests are answered by these, in order; then by `fallback` (default 204). */
  script(responders: Responder[], fallback: Responder = answer(204)): void {
    this.#script = [...responders];
    this.#fallback = fallback;
  }

  reset(): void {
    this.received.length = 0;
    this.script([]);
  }

  async waitForRequests(n: number, timeoutMs = 10_000): Promise<ReceivedRequest[]> {
    return waitFor(`${n} webhook requests`, async () => this.received.length >= n && this.received, timeoutMs);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const socket = req.socket as TLSSocket;
      const received: ReceivedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        servername: typeof socket.servername === 'string' ? socket.servername : undefined,
        localAddress: unmap(socket.localAddress),
        at: Date.now(),
      };
      this.received.push(received);
      (this.#script.shift() ?? this.#fallback)(received, res);
    });
  }
}

/**
 * Standard Webhooks verification, as a receiver does it: the key is the secret after `whsec_`,
 * base64-decoded; the signed content is `${webhook-id}.${webhook-timestamp}.${body}`; the
 * header is a space-delimited list of `v1,<base64 HMAC-SHA256>`, any one of which may match
 * (compared in constant time); the timestamp must be within `toleranceSeconds` of now.
 */
export function verifyStandardWebhook(
  secret: string,
  headers: IncomingHttpHeaders,
  body: string,
  nowSeconds = Date.now() / 1000,
  toleranceSeconds = 300,
): boolean {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signatures !== 'string') return false;
  if (!/^[0-9]+$/.test(timestamp) || Math.abs(nowSeconds - Number(timestamp)) > toleranceSeconds) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  return signatures.split(' ').some((s) => {
    const [version, sig] = s.split(',');
    if (version !== 'v1' || sig === undefined) return false;
    const got = Buffer.from(sig, 'base64');
    return got.length === expected.length && timingSafeEqual(got, expected);
  });
}

/** An IPv4 address of this machine that is not loopback (the main interface's), if it has one. */
export function machineAddress(): string | undefined {
  const virtual = /^(docker|pw|cni|veth|br-|virbr|flannel|cali|kube)/;
  const all = Object.entries(networkInterfaces()).flatMap(([name, addrs]) =>
    (addrs ?? []).filter((a) => a.family === 'IPv4' && !a.internal).map((a) => ({ name, address: a.address })),
  );
  return (all.find((a) => !virtual.test(a.name)) ?? all[0])?.address;
}
