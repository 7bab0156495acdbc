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
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
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

export interface AgentRun {
  exited: Promise<AgentExit>;
  /** SIGINT to the agent's process group. */
  interrupt(): Promise<void>;
  /** SIGKILL to its group and to every process with its marker; resolves when done. */
  killAll(): Promise<void>;
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
    const stdoutDone = once(
      createInterface({ input: child.stdout! }).on('line', (l) => onLine('stdout', l)),
      'close',
    );
    const stderrDone = once(
      createInterface({ input: child.stderr! }).on('line', (l) => onLine('stderr', l)),
      'close',
    );
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
      try {
        for await (const line of createInterface({ input: res.body })) {
          const msg = parseLine(line);
          if (!msg) continue;
          if (msg.t === 'exit')
            exit = {
              code: msg.code,
              signal: msg.signal,
              ...(typeof msg.forkRefusals === 'number' && msg.forkRefusals > 0 ? { forkRefusals: msg.forkRefusals } : {}),
            };
          else if (msg.t === 'error') onLine('stderr', `agent server: ${msg.message}`);
          else onLine(msg.t, msg.l);
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
