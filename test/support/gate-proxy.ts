/**
 * A TCP proxy in front of a real service that a test can hold: while held, no byte moves in
 * either direction, so a client (the runner) stays inside whatever transfer it started.
 */
import { once } from 'node:events';
import { type Socket, connect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface GateProxy {
  url: string;
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

export async function startGateProxy(targetUrl: string): Promise<GateProxy> {
  const target = new URL(targetUrl);
  let held = false;
  const resumers = new Set<() => void>();
  const sockets = new Set<Socket>();

  function forward(src: Socket, dst: Socket): void {
    src.on('data', (chunk: Buffer) => {
      const send = () => {
        if (!dst.write(chunk)) src.pause();
      };
      if (!held) return send();
      src.pause();
      const resume = () => {
        resumers.delete(resume);
        send();
        src.resume();
      };
      resumers.add(resume);
    });
    dst.on('drain', () => {
      if (!held) src.resume();
    });
    src.on('end', () => dst.end());
    src.on('error', () => dst.destroy());
    src.on('close', () => dst.destroy());
  }

  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    forward(client, upstream);
    forward(upstream, client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hold() {
      held = true;
    },
    release() {
      held = false;
      for (const r of [...resumers]) r();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
