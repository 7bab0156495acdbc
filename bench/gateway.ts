/**
 * What the model gateway costs a model call, side by side with a direct connection, in one run.
 * The upstream is a model endpoint that answers at once (bench/support/fast-model.ts: the
 * Responses API's streamed shape, no model thinking, so only transport shows); the gateway runs
 * its app in a process of its own (bench/support/gateway-process.ts), as in a cluster.
 *
 *   first byte: POST /v1/responses -> the first byte of the streamed answer, a small request,
 *               BENCH_GATEWAY_CALLS calls each way, alternated; the gateway's share is the p50
 *               difference (goal: at most 2 ms), with a realistic 200 KB conversation as well
 *               (codex re-sends the whole conversation each turn: the gateway parses it for the model);
 *   throughput: one long streamed answer (BENCH_GATEWAY_STREAM_MIB of SSE events), MiB/s each
 *               way, BENCH_RUNS runs alternated (goal: at least 0.95x of direct): unpaced (the
 *               upstream writes as fast as the client reads), and paced at
 *               BENCH_GATEWAY_PACE_MIBS (default 64 MiB/s, thousands of times what a model emits);
 *   CPU:        the gateway's own CPU time (utime + stime from /proc) per MiB it forwards, beside
 *               the upstream's per MiB it produces. On a 2-core machine the unpaced stream keeps
 *               the client and the upstream busy, so a third process in the path competes with
 *               them for the cores: the unpaced ratio measures the machine as much as the gateway.
 * Everything the gateway does runs: credential verification, the live-attempt check, the model
 * check, the budget, the usage tap, the report (to a no-op: the manager is not in the path).
 *
 *   make bench-gateway
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Agent, request } from 'undici';
import { GatewayCredentials } from '../common/gateway-credential.js';
import { DEFAULT_MODEL } from '../common/models.js';
import { BENCH_DIR, RUNS, alternating, headline, percentile, printTable, record, sized, summarize } from './lib.js';

const CALLS = sized('BENCH_GATEWAY_CALLS', 400, 20);
const STREAM_MIB = sized('BENCH_GATEWAY_STREAM_MIB', 256, 4);
const PACE_MIBS = Number(process.env.BENCH_GATEWAY_PACE_MIBS ?? 64);
const KEY = 'sk-bench-upstream';
const SECRET = randomBytes(32).toString('hex');

/** A bench process that prints its URL first. */
async function serve(script: string, env: Record<string, string>): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(BENCH_DIR, 'support', script)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const [url] = (await new Promise<string[]>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', (l) => resolve([l]));
    proc.once('exit', (code) => reject(new Error(`${script} exited ${code}`)));
  })) as [string];
  return { url, proc };
}
const upstream = await serve('fast-model.ts', {
  BENCH_UPSTREAM_KEY: KEY,
  BENCH_GATEWAY_STREAM_MIB: String(STREAM_MIB),
  BENCH_GATEWAY_PACE_MIBS: String(PACE_MIBS),
});
const gateway = await serve('gateway-process.ts', {
  BENCH_UPSTREAM_URL: upstream.url,
  BENCH_UPSTREAM_KEY: KEY,
  BENCH_GATEWAY_SECRET: SECRET,
});
const upstreamUrl = upstream.url;
const gatewayUrl = gateway.url;
const credential = await new GatewayCredentials(SECRET).issue({
  jobId: 'bench',
  namespace: 'ns',
  name: 'bench',
  attempt: 1,
  model: DEFAULT_MODEL,
  budget: { maxRequests: 1e9, maxInputTokens: 1e15, maxOutputTokens: 1e15 },
  ttlSeconds: 3600,
});

const client = new Agent({ keepAliveTimeout: 60_000 });
const small = JSON.stringify({
  model: DEFAULT_MODEL,
  stream: true,
  input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] }],
});
const longAnswer = small.replace('"hi"', '"LONG-ANSWER"');
const pacedAnswer = small.replace('"hi"', '"PACED-ANSWER"');

/** CPU time (user + system) a process has used so far, in ms (from /proc: clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}
const conversation = JSON.stringify({
  model: DEFAULT_MODEL,
  stream: true,
  input: Array.from({ length: 200 }, (_, i) => ({
    type: 'message',
    role: i % 2 ? 'assistant' : 'user',
    content: [{ type: 'input_text', text: 'lorem ipsum '.repeat(80) }],
  })),
});

/** ms to the first byte of the answer; the body is then read to its end. */
async function firstByte(base: string, key: string, body: string): Promise<number> {
  const start = performance.now();
  const res = await request(`${base}/responses`, {
    method: 'POST',
    dispatcher: client,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body,
  });
  let first = 0;
  for await (const chunk of res.body) if (!first && (chunk as Buffer).length) first = performance.now() - start;
  if (res.statusCode !== 200) throw new Error(`${base}: ${res.statusCode}`);
  return first;
}

/** MiB/s of one long streamed answer (unpaced, or paced by the upstream). */
async function throughput(base: string, key: string, body = longAnswer): Promise<number> {
  const start = performance.now();
  const res = await request(`${base}/responses`, {
    method: 'POST',
    dispatcher: client,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body,
  });
  let bytes = 0;
  for await (const chunk of res.body) bytes += (chunk as Buffer).length;
  if (res.statusCode !== 200) throw new Error(`${base}: ${res.statusCode}`);
  return bytes / 1024 / 1024 / ((performance.now() - start) / 1000);
}

const direct = { small: [] as number[], conv: [] as number[], mibs: [] as number[], paced: [] as number[] };
const viaGateway = { small: [] as number[], conv: [] as number[], mibs: [] as number[], paced: [] as number[] };
/** CPU ms per MiB: the gateway's per MiB forwarded, the upstream's per MiB produced (in the direct runs). */
const cpu = { gateway: [] as number[], upstream: [] as number[] };
/** Runs one throughput measurement and the CPU its server side used for it. */
async function measured(proc: ChildProcess, run: () => Promise<number>, into: number[]): Promise<number> {
  const before = cpuMs(proc.pid!);
  const mibs = await run();
  into.push((cpuMs(proc.pid!) - before) / STREAM_MIB);
  return mibs;
}
// warm both paths (connections, JIT) before measuring
for (let i = 0; i < 50; i++) await Promise.all([firstByte(upstreamUrl, KEY, small), firstByte(gatewayUrl, credential, small)]);
for (let i = 0; i < CALLS; i++) {
  const [d, g] = await alternating(
    i,
    () => firstByte(upstreamUrl, KEY, small),
    () => firstByte(gatewayUrl, credential, small),
  );
  direct.small.push(d);
  viaGateway.small.push(g);
}
for (let i = 0; i < Math.max(50, CALLS / 4); i++) {
  const [d, g] = await alternating(
    i,
    () => firstByte(upstreamUrl, KEY, conversation),
    () => firstByte(gatewayUrl, credential, conversation),
  );
  direct.conv.push(d);
  viaGateway.conv.push(g);
}
for (let i = 0; i < RUNS; i++) {
  const [d, g] = await alternating(
    i,
    () => measured(upstream.proc, () => throughput(upstreamUrl, KEY), cpu.upstream),
    () => measured(gateway.proc, () => throughput(gatewayUrl, credential), cpu.gateway),
  );
  direct.mibs.push(d);
  viaGateway.mibs.push(g);
}
for (let i = 0; i < RUNS; i++) {
  const [d, g] = await alternating(
    i,
    () => throughput(upstreamUrl, KEY, pacedAnswer),
    () => throughput(gatewayUrl, credential, pacedAnswer),
  );
  direct.paced.push(d);
  viaGateway.paced.push(g);
}

const p50 = (v: number[]) => percentile(v, 50);
const overhead = p50(viaGateway.small) - p50(direct.small);
const overheadConv = p50(viaGateway.conv) - p50(direct.conv);
const ratios = viaGateway.mibs.map((g, i) => g / direct.mibs[i]!);
const pacedRatios = viaGateway.paced.map((g, i) => g / direct.paced[i]!);
printTable(`model gateway vs a direct connection (first byte: n = ${CALLS} calls each; throughput: ${RUNS} runs of ${STREAM_MIB} MiB)`, [
  ['first byte, direct (small request)', direct.small, 'ms'],
  ['first byte, via the gateway (small request)', viaGateway.small, 'ms'],
  [`first byte, direct (${Math.round(conversation.length / 1024)} KB conversation)`, direct.conv, 'ms'],
  [`first byte, via the gateway (${Math.round(conversation.length / 1024)} KB conversation)`, viaGateway.conv, 'ms'],
  ['long stream, direct', direct.mibs, 'MiB/s'],
  ['long stream, via the gateway', viaGateway.mibs, 'MiB/s'],
  ['throughput ratio (gateway / direct)', ratios, 'x'],
  [`paced stream (${PACE_MIBS} MiB/s), direct`, direct.paced, 'MiB/s'],
  [`paced stream (${PACE_MIBS} MiB/s), via the gateway`, viaGateway.paced, 'MiB/s'],
  ['paced throughput ratio (gateway / direct)', pacedRatios, 'x'],
  ['CPU per MiB, the upstream producing it', cpu.upstream, 'ms'],
  ['CPU per MiB, the gateway forwarding it', cpu.gateway, 'ms'],
]);
console.log(
  `  first byte p50: direct ${p50(direct.small).toFixed(2)} ms, gateway ${p50(viaGateway.small).toFixed(2)} ms (+${overhead.toFixed(2)} ms); p99 ${percentile(direct.small, 99).toFixed(2)} / ${percentile(viaGateway.small, 99).toFixed(2)} ms`,
);
console.log(`  with a ${Math.round(conversation.length / 1024)} KB conversation: +${overheadConv.toFixed(2)} ms p50`);
await record('gateway', {
  calls: CALLS,
  stream_mib: STREAM_MIB,
  first_byte_ms: {
    direct: summarize(direct.small),
    gateway: summarize(viaGateway.small),
    overhead_p50: overhead,
    overhead_p50_conversation: overheadConv,
  },
  throughput_mibs: { direct: summarize(direct.mibs), gateway: summarize(viaGateway.mibs), ratio: summarize(ratios) },
  paced_mibs: { pace: PACE_MIBS, direct: summarize(direct.paced), gateway: summarize(viaGateway.paced), ratio: summarize(pacedRatios) },
  cpu_ms_per_mib: { upstream: summarize(cpu.upstream), gateway: summarize(cpu.gateway) },
});
headline(
  `gateway adds ${overhead.toFixed(2)} ms p50 to the first streamed byte (goal <= 2 ms; ${overheadConv.toFixed(2)} ms with a ${Math.round(conversation.length / 1024)} KB conversation); long-stream throughput ${summarize(ratios).median.toFixed(3)}x direct unpaced, ${summarize(pacedRatios).median.toFixed(3)}x paced at ${PACE_MIBS} MiB/s (goal >= 0.95x); gateway CPU ${summarize(cpu.gateway).median.toFixed(2)} ms/MiB`,
);
upstream.proc.kill();
gateway.proc.kill();
process.exit(0);
