/**
 * How the runner starts the agent (codex) and stops it, wherever the agent runs:
 * - LocalLauncher: a child process here (`pagewright run`, the tests of the runner alone); and
 *   inside the agent container, where runner/agent-server.ts uses it;
 * - RemoteLauncher: in a pod, the agent runs in its own container under its own uid
 *   (manager/pod-spec.ts), and the runner drives it over the pod's loopback through the agent
 *   server. Nothing the runner holds goes there but what the run needs (its argv, the gateway
 *   credential in its environment).
 *
 * Stopping (notes/codex-cli.md): SIGINT first (codex ends its command), then after a grace period
 * SIGKILL of codex's process group and of every process carrying the run's marker, which reaches
 * commands that codex started in their own session.
 *
 * What the runner keeps of the agent's output is bounded: the agent can write into codex's own
 * stdout and stderr (same uid: /proc/<codex>/fd/2), and every line of it would go into the job log
 * on the runner's private volume and into the runner's container log, both on the node's disk.
 * Lines are cut at MAX_LINE_BYTES (codex's own events stay under ~1.1 MiB: it cuts a command's
 * output at 1 MiB, measured with 50 MB of output), and a run's lines together at
 * MAX_OUTPUT_BYTES, each line counted at least LINE_COST bytes (what a log line costs, whatever
 * its text); past that they are dropped, with one line saying so. The run goes on: the model's
 * account and the files are what judge it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request } from 'undici';
import { PagewrightError } from '../common/errors.js';
import { killMarkedProcesses } from '../common/process-marker.js';

export interface AgentSpec {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  /** Inherited by every process of the run: how the last of them are found and killed. */
  marker: string;
}

export interface AgentExit {
  code: number | null;
  signal: string | null;
  /** Forks the kernel refused in the agent's container for a pids limit, while the run lasted (agent-server.ts). */
  forkRefusals?: number;
}

/** The longest line kept from the agent (longer ones are cut). */
const MAX_LINE_BYTES = 4 * 1024 * 1024;
/** What one run's lines may add to the job log, together. */
export const MAX_OUTPUT_BYTES = 32 * 1024 * 1024;
/** A line costs at least this much of MAX_OUTPUT_BYTES: the log's fields around it. */
const LINE_COST = 256;

type OnLine = (stream: 'stdout' | 'stderr', line: string) => void;

/** Lines of a byte stream, each cut at `maxBytes` (`cut` says so): never more than that in memory. */
export async function* boundedLines(
  input: AsyncIterable<Buffer>,
  maxBytes = MAX_LINE_BYTES,
): AsyncGenerator<{ text: string; bytes: number; cut: boolean }> {
  let parts: Buffer[] = [];
  let size = 0;
  let cut = false;
  for await (const chunk of input) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      if (!cut) {
        const room = maxBytes - size;
        const piece = chunk.subarray(start, Math.min(end, start + room));
        if (piece.length > 0) parts.push(Buffer.from(piece));
        size += piece.length;
        if (end - start > room) cut = true;
      }
      if (nl === -1) break;
      yield { text: Buffer.concat(parts).toString('utf8'), bytes: size, cut };
      parts = [];
      size = 0;
      cut = false;
      start = nl + 1;
    }
  }
  if (size > 0 || cut) yield { text: Buffer.concat(parts).toString('utf8'), bytes: size, cut };
}

/** `onLine`, until the run's lines have cost MAX_OUTPUT_BYTES; then one notice and nothing more. */
export function outputBudget(
  onLine: OnLine,
  maxBytes = MAX_OUTPUT_BYTES,
): (stream: 'stdout' | 'stderr', line: string, bytes: number) => void {
  let spent = 0;
  return (stream, line, bytes) => {
    if (spent >= maxBytes) return;
    spent += Math.max(bytes, LINE_COST);
    if (spent < maxBytes) onLine(stream, line);
    else onLine('stderr', `pagewright: the agent's output passed ${maxBytes} bytes; the rest of this run's output is dropped`);
  };
}

export interface AgentRun {
  exited: Promise<AgentExit>;
  /** SIGINT to the agent's process group. */
  interrupt(): Promise<void>;
  /** SIGKILL to its group and to every process with its marker; resolves when done. */
  killAll(): Promise<void>;
}

export interface Stopper<W> {
  (why: W): Promise<void>;
  stoppedBy(): W | null;
}

/**
 * Stops a run (codex, the site's check command): SIGINT, a grace period, then SIGKILL of its
 * group and of every process with its marker. The first reason wins; later calls do nothing.
 */
export function stopper<W>(run: AgentRun, graceMs: number): Stopper<W> {
  let first: W | null = null;
  const stop = (async (why: W) => {
    if (first !== null) return;
    first = why;
    await run.interrupt();
    const graceful = await Promise.race([run.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), graceMs))]);
    if (!graceful) await run.killAll();
  }) as Stopper<W>;
  stop.stoppedBy = () => first;
  return stop;
}

export interface AgentLauncher {
  start(spec: AgentSpec, onLine: (stream: 'stdout' | 'stderr', line: string) => void): Promise<AgentRun>;
}

export class LocalLauncher implements AgentLauncher {
  async start(spec: AgentSpec, onLine: (stream: 'stdout' | 'stderr', line: string) => void): Promise<AgentRun> {
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // its own process group, so a group kill reaches what it forked in the group
      detached: true,
    });
    const spawned = once(child, 'spawn').then(
      () => null,
      (err: Error) => err,
    );
    const emit = outputBudget(onLine);
    const read = async (stream: 'stdout' | 'stderr', input: AsyncIterable<Buffer>) => {
      try {
        for await (const { text, bytes, cut } of boundedLines(input))
          emit(stream, cut ? `${text} [line cut at ${MAX_LINE_BYTES} bytes]` : text, bytes);
      } catch {
        // the pipe broke: the process is gone, its exit says why
      }
    };
    const stdoutDone = read('stdout', child.stdout!);
    const stderrDone = read('stderr', child.stderr!);
    const failed = await spawned;
    if (failed) throw new PagewrightError('CodexFailed', `the agent could not start: ${failed.message}`);
    const exited = (async () => {
      const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
      await Promise.all([stdoutDone, stderrDone]);
      return { code, signal };
    })();
    return {
      exited,
      interrupt: async () => signalGroup(child, 'SIGINT'),
      killAll: async () => {
        signalGroup(child, 'SIGKILL');
        await killMarkedProcesses(spec.marker);
      },
    };
  }
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** One line of the agent server's streamed answer to POST /runs. */
export type AgentServerLine =
  | { t: 'stdout' | 'stderr'; l: string }
  | { t: 'exit'; code: number | null; signal: string | null; forkRefusals?: number }
  | { t: 'error'; message: string };

export class RemoteLauncher implements AgentLauncher {
  readonly #agent = new Agent({ keepAliveTimeout: 1000 });

  /** `url`: the agent server on the pod's loopback; `readyTimeoutMs`: how long its container may take to come up. */
  constructor(
    private readonly url: string,
    private readonly readyTimeoutMs = 60_000,
  ) {}

  async start(spec: AgentSpec, onLine: (stream: 'stdout' | 'stderr', line: string) => void): Promise<AgentRun> {
    const res = await this.#connect(spec);
    const exited = (async (): Promise<AgentExit> => {
      let exit: AgentExit = { code: null, signal: 'lost' };
      const emit = outputBudget(onLine);
      let cutLines = 0;
      try {
        // the server's lines are JSON of the agent's: one cut short no longer parses, and is dropped
        for await (const { text, bytes, cut } of boundedLines(res.body)) {
          const msg = cut ? null : parseLine(text);
          if (cut && cutLines++ === 0) onLine('stderr', `agent server: a line over ${MAX_LINE_BYTES} bytes was dropped`);
          if (!msg) continue;
          if (msg.t === 'exit')
            exit = {
              code: msg.code,
              signal: msg.signal,
              ...(typeof msg.forkRefusals === 'number' && msg.forkRefusals > 0 ? { forkRefusals: msg.forkRefusals } : {}),
            };
          else if (msg.t === 'error') onLine('stderr', `agent server: ${msg.message}`);
          else emit(msg.t, msg.l, bytes);
        }
      } catch (err) {
        onLine('stderr', `agent server connection lost: ${(err as Error).message}`);
      }
      return exit;
    })();
    return {
      exited,
      interrupt: () => this.#post('/runs/current/interrupt'),
      killAll: () => this.#post('/runs/current/kill'),
    };
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  async #connect(spec: AgentSpec) {
    const deadline = Date.now() + this.readyTimeoutMs;
    for (;;) {
      try {
        const res = await request(`${this.url}/runs`, {
          method: 'POST',
          dispatcher: this.#agent,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(spec),
          headersTimeout: 30_000,
          // a command may stay silent for long; the runner's own deadline ends the run
          bodyTimeout: 0,
        });
        if (res.statusCode !== 200) {
          const text = await res.body.text();
          throw new PagewrightError('CodexFailed', `the agent server refused the run (${res.statusCode}): ${text.slice(0, 300)}`);
        }
        return res;
      } catch (err) {
        if (err instanceof PagewrightError) throw err;
        // its container is still starting (a native sidecar: started first, maybe not listening yet)
        if (Date.now() > deadline)
          throw new PagewrightError('CodexFailed', `the agent server at ${this.url} did not answer: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  async #post(path: string): Promise<void> {
    try {
      const res = await request(`${this.url}${path}`, {
        method: 'POST',
        dispatcher: this.#agent,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      await res.body.dump();
    } catch {
      // the agent server is gone: so is everything it ran (its container's processes die with it)
    }
  }
}

function parseLine(line: string): AgentServerLine | null {
  try {
    return JSON.parse(line) as AgentServerLine;
  } catch {
    return null;
  }
}
