/**
 * The site's own check command (PagewrightSite spec.checks.command, e.g. `npm run build`), run
 * where the agent runs (its container in a pod, through the same launcher as codex), never in
 * the runner: it is the site's code, as untrusted as the agent's.
 *
 * It runs on a copy of the output (`../check-site`, made by the command's own shell, so its
 * files are the agent's to write), so nothing it writes (a `dist/`, a cache) goes into the
 * output. Its environment is PATH, HOME, LANG and the run's marker only: no model key, no token. Bounds: its own
 * deadline (SIGINT, a grace period, then SIGKILL of its group and of every process with the
 * run's marker); its output is bounded by the launcher (agent-launcher.ts: lines cut, a run's
 * lines capped) and only a tail is kept for the finding; forks are bounded by the agent
 * container's pids limit. A command that hangs, floods or forks without end ends as a failed
 * check, never a stuck job. Its output goes to the job log.
 *
 * The command is judged on the output alone (it is not run on the base): a site whose command
 * already fails fails this check on every job.
 */
import { PagewrightError } from '../../common/errors.js';
import { PROCESS_MARKER_ENV } from '../../common/process-marker.js';
import type { ManifestCheck } from '../../common/schemas.js';
import { type AgentExit, type AgentLauncher, stopper } from '../agent-launcher.js';

export interface SiteCommand {
  run: string;
  timeoutMs: number;
  launcher: AgentLauncher;
  siteDir: string;
  home: string;
  marker: string;
  killGraceMs?: number;
  signal?: AbortSignal;
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
}

/** What the finding keeps of the command's output. */
const TAIL_LINES = 20;
const TAIL_CHARS = 1500;

/** The copy the command runs in, beside the site (the same volume). */
const COPY = '../check-site';

export async function runSiteCommand(opts: SiteCommand): Promise<ManifestCheck> {
  const started = Date.now();
  const tail: string[] = [];
  const run = await opts.launcher.start(
    {
      command: '/bin/sh',
      // $0 is the site's command, run by a shell of its own inside the copy
      args: ['-c', `rm -rf ${COPY} && mkdir ${COPY} && cp -R . ${COPY}/ && cd ${COPY} && exec /bin/sh -c "$0"`, opts.run],
      env: {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        HOME: opts.home,
        LANG: process.env.LANG ?? 'C.UTF-8',
        // inherited by all it starts, even in a session of its own: how the last of them are found and killed
        [PROCESS_MARKER_ENV]: opts.marker,
      },
      cwd: opts.siteDir,
      marker: opts.marker,
    },
    (stream, line) => {
      opts.onLine?.(stream, line);
      tail.push(line.length > 500 ? `${line.slice(0, 500)}…` : line);
      if (tail.length > TAIL_LINES) tail.shift();
    },
  );
  const stop = stopper<'timeout' | 'aborted'>(run, opts.killGraceMs ?? 3000);
  const timer = setTimeout(() => void stop('timeout'), opts.timeoutMs);
  const onAbort = () => void stop('aborted');
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let exit: AgentExit;
  try {
    exit = await run.exited;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  // nothing the command started may outlive it
  await run.killAll();
  const stopped = stop.stoppedBy();
  if (stopped === 'aborted') throw opts.signal?.reason ?? new PagewrightError('Killed', 'the site command was stopped');
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const output = tail.join('\n').slice(-TAIL_CHARS);
  const what = JSON.stringify(opts.run);
  let failure: { code: string; message: string } | null = null;
  if (stopped === 'timeout')
    failure = { code: 'command-timeout', message: `${what} did not finish within its ${opts.timeoutMs / 1000} s and was stopped` };
  else if (exit.forkRefusals)
    failure = { code: 'command-pids-limit', message: `${what} hit the container's process limit (${exit.forkRefusals} forks refused)` };
  else if (exit.code !== 0)
    failure = {
      code: 'command-failed',
      message: `${what} ${exit.code === null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`} after ${seconds} s`,
    };
  if (!failure) return { name: 'command', passed: true, introduced: 0, preexisting: 0, findings: [] };
  return {
    name: 'command',
    passed: false,
    introduced: 1,
    preexisting: 0,
    findings: [
      {
        path: '',
        code: failure.code,
        message: `${failure.message}${output ? `; its last output:\n${output}` : ''}`.slice(0, 2000),
        introduced: true,
      },
    ],
  };
}
