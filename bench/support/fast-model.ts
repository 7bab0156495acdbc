/**
 * A model endpoint that answers at once, for bench/gateway.ts: the Responses API's streamed
 * shape, a short answer, or (when the request holds LONG-ANSWER) BENCH_GATEWAY_STREAM_MIB of
 * delta events: as fast as it can, or (PACED-ANSWER) at BENCH_GATEWAY_PACE_MIBS MiB/s, 64 KiB at a
 * time. Its own process, as a real endpoint is. Prints its URL on stdout.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const KEY = process.env.BENCH_UPSTREAM_KEY ?? 'sk-bench-upstream';
const STREAM_MIB = Number(process.env.BENCH_GATEWAY_STREAM_MIB ?? 256);
const PACE_MIBS = Number(process.env.BENCH_GATEWAY_PACE_MIBS ?? 64);
const delta = Buffer.from(
  `event: response.output_text.delta\ndata: ${JSON.stringify({ type: 'response.output_text.delta', delta: 'x'.repeat(180) })}\n\n`,
);
const completed = Buffer.from(
  `event: response.completed\ndata: ${JSON.stringify({ type: 'response.completed', response: { id: 'r', usage: { input_tokens: 10, output_tokens: 5 } } })}\n\n`,
);
const block = Buffer.concat(Array.from({ length: Math.ceil(65536 / delta.length) }, () => delta));

const server = createServer(async (req, res) => {
  let long = false;
  let paced = false;
  for await (const chunk of req) {
    long ||= (chunk as Buffer).includes('LONG-ANSWER');
    paced ||= (chunk as Buffer).includes('PACED-ANSWER');
  }
  if (req.headers.authorization !== `Bearer ${KEY}`) return void res.writeHead(401).end();
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  if (!long && !paced) return void res.end(Buffer.concat([delta, completed]));
  const total = STREAM_MIB * 1024 * 1024;
  const start = performance.now();
  for (let sent = 0; sent < total; sent += block.length) {
    if (!res.write(block)) await once(res, 'drain');
    // paced: never ahead of PACE_MIBS (the wait is at most a block's worth, so the rate holds)
    const ahead = paced ? (sent + block.length) / (PACE_MIBS * 1024 * 1024) - (performance.now() - start) / 1000 : 0;
    if (ahead > 0) await new Promise((r) => setTimeout(r, ahead * 1000));
  }
  res.end(completed);
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1');
await once(server, 'listening');
console.log(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`);
