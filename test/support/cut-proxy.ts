/**
 * A TCP proxy in front of the apiserver that a test can cut, freeze and count connections
 * through: the network faults a manager must survive, made on demand.
 */
import { once } from 'node:events';
import { type Server, type Socket, connect, createServer } from 'node:net';
import { getFreePort } from './ports.js';

export interface CutProxy {
  url: string;
  /** Drops every connection and refuses new ones. */
  cut(): Promise<void>;
  restore(): Promise<void>;
  /** Existing connections stop moving bytes (a silent hang); new ones work. */
  freezeExisting(): void;
  close(): Promise<void>;
  /** TCP connections accepted so far. */
  readonly connections: number;
}

export async function startCutProxy(target: URL): Promise<CutProxy> {
  const port = await getFreePort();
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let connections = 0;
  const listen = async () => {
    server = createServer((client) => {
      connections += 1;
      const upstream = connect(Number(target.port), target.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
  };
  const stop = async () => {
    const s = server;
    server = null;
    for (const sock of sockets) sock.destroy();
    if (s) await new Promise((r) => s.close(r));
  };
  await listen();
  return {
    url: `https://127.0.0.1:${port}`,
    cut: stop,
    restore: listen,
    freezeExisting() {
      for (const s of sockets) {
        s.unpipe();
        s.pause();
      }
    },
    close: stop,
    get connections() {
      return connections;
    },
  };
}
