/**
 * `pagewright diff JOB` (the job's diff.patch, coloured as git colours it on a terminal) and
 * `pagewright preview JOB | --site SITE[@VERSION]` (preview-proxy.ts: a local server in front
 * of the review pages, until SIGINT or SIGTERM).
 *
 * preview names its target explicitly rather than guessing which object exists: a job and a
 * site may share a name (a job is often named after its site), and a guess would show the
 * wrong thing without saying so.
 */
import { CliError, UsageError, parseCommand, statusMessage } from './command.js';
import { colorDiff, colorMode, shouldColor } from './diff-color.js';
import { loadKube, readBody } from './kube-context.js';
import { type PreviewTarget, startPreviewProxy } from './preview-proxy.js';
import { ReviewClient } from './review-client.js';
import { resolveVersion } from './format.js';
import { readSite } from './sites.js';

const DIFF_USAGE = `usage: pagewright diff JOB [--color=always|never|auto] [-n NS] [--kubeconfig FILE] [--context NAME]

Prints the job's diff.patch (what the agent changed, as a unified diff), coloured as git
colours it when stdout is a terminal and NO_COLOR is unset (--color=auto, the default).`;

const PREVIEW_USAGE = `usage: pagewright preview JOB [--port N] [-n NS] [--kubeconfig FILE] [--context NAME]
       pagewright preview --site SITE[@VERSION] [--port N] ...

Serves a job's review page (its diff, its output and the version it edited, side by side) or
a site version as a website (VERSION: a sha256, a prefix the site's history lists, or
current, the default) on http://127.0.0.1:PORT (--port, default: a free port), with your
kubeconfig's credentials, until Ctrl-C. Only GET and HEAD, only that job's or version's pages,
only for a browser on this machine.`;

export async function diffCommand(argv: string[], out: (text: string) => void): Promise<void> {
  const p = parseCommand(argv, { color: { type: 'string' } }, { min: 1, max: 1, names: 'JOB' });
  if (p.help) return void out(DIFF_USAGE);
  const color = shouldColor(colorMode(p.values.color), process.stdout.isTTY === true, process.env);
  const patch = await new ReviewClient(loadKube(p.kube)).jobDiff(p.positionals[0]!);
  if (patch === '') return;
  out((color ? colorDiff(patch) : patch).replace(/\n$/, ''));
}

/** `SITE` or `SITE@VERSION`. */
export function parseSiteRef(ref: string): { site: string; version: string } {
  const at = ref.indexOf('@');
  const site = at < 0 ? ref : ref.slice(0, at);
  const version = at < 0 ? 'current' : ref.slice(at + 1);
  if (!site || !version) throw new UsageError(`--site takes SITE or SITE@VERSION, got ${JSON.stringify(ref)}`);
  return { site, version };
}

export async function previewCommand(argv: string[], out: (line: string) => void, err: (line: string) => void): Promise<void> {
  const p = parseCommand(
    argv,
    { site: { type: 'string' }, port: { type: 'string' } },
    { min: 0, max: 1, names: 'JOB or --site SITE[@VERSION]' },
  );
  if (p.help) return void out(PREVIEW_USAGE);
  const site = typeof p.values.site === 'string' ? p.values.site : undefined;
  const job = p.positionals[0];
  if ((site === undefined) === (job === undefined)) throw new UsageError('name a JOB or a --site SITE[@VERSION] (one of the two)');
  const portText = typeof p.values.port === 'string' ? p.values.port : '0';
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new UsageError('--port must be an integer from 0 to 65535');
  const kube = loadKube(p.kube);
  let target: PreviewTarget;
  if (job !== undefined) target = { kind: 'job', job };
  else {
    const ref = parseSiteRef(site!);
    const version = /^[a-f0-9]{64}$|^current$/.test(ref.version)
      ? ref.version
      : resolveVersion(ref.version, await readSite(kube, ref.site), { allowCurrent: true });
    target = { kind: 'site', site: ref.site, version };
  }
  // a check that the job or version exists and the user may see it, so that a typo or a missing
  // role fails here, in one line, rather than in the browser (a missing file is fine)
  const probe = await new ReviewClient(kube).request(
    'GET',
    target.kind === 'job' ? `jobs/${target.job}/review` : `sites/${target.site}/versions/${target.version}/files/`,
  );
  if ((probe.statusCode ?? 0) >= 400) {
    const body = await readBody(probe, 1024 * 1024).catch(() => '');
    if (!(probe.statusCode === 404 && /"reason"\s*:\s*"NotFound"/.test(body)))
      throw new CliError(statusMessage(probe.statusCode ?? 0, body));
  } else probe.resume();
  const proxy = await startPreviewProxy({ kube, target, port, onError: err });
  const what = target.kind === 'job' ? `job ${target.job}` : `site ${target.site} (version ${target.version})`;
  out(`previewing ${what} in namespace ${kube.namespace}`);
  out(`url: ${proxy.url}`);
  out('press Ctrl-C to stop');
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  await proxy.close();
  err(`stopped (${signal})`);
}
