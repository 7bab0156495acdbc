#!/usr/bin/env node
/**
 * `pagewright` command: dispatch only. The cluster commands (sites, diff, preview, approve, followup) use
 * the user's kubeconfig and RBAC, never a storage token (cli/kube-context.ts), and behave like
 * kubectl's: exit 0 on success, 1 with one line `error: ...` on stderr on a failure, 2 on a
 * usage error (cli/command.ts). `run` and `demo-model` need no cluster (cli/local-commands.ts).
 */
import { approveCommand } from './approve.js';
import { CliError, EXIT, UsageError } from './command.js';
import { followupCommand } from './followup.js';
import { errorLine } from './kube-context.js';
import { LOCAL_USAGE, demoModelCommand, runCommand } from './local-commands.js';
import { diffCommand, previewCommand } from './review-commands.js';
import { sitesCommand } from './sites.js';

const USAGE = `usage: pagewright COMMAND [ARGS] [-n NAMESPACE] [--kubeconfig FILE] [--context NAME]

cluster commands (your kubeconfig's credentials and RBAC):
  sites push NAME DIR            push DIR as the site's new version (creates the site if absent)
  sites pull NAME [--version V] DIR   unpack a version of the site into DIR
  sites list [-o json]           the namespace's sites
  sites history NAME [-o json]   a site's latest changes
  sites rollback NAME [--to V]   make an earlier version current again
  diff JOB [--color=WHEN]        the job's diff.patch
  preview JOB | --site SITE[@V]  serve the job's review page, or a site version, on 127.0.0.1
  approve JOB [--no-wait]        publish a Succeeded job's output and wait for the result
  followup JOB PROMPT [--wait]   a new job that edits JOB's output and resumes its session

on this machine, no cluster:
  run --site DIR --prompt TEXT   one job end to end
  demo-model                     the scripted model server

'pagewright COMMAND --help' describes a command.

${LOCAL_USAGE}`;

const out = (text: string) => void process.stdout.write(`${text}\n`);
const err = (text: string) => void process.stderr.write(`${text}\n`);

const [command, ...rest] = process.argv.slice(2);
try {
  switch (command) {
    case 'run':
      process.exitCode = await runCommand(rest);
      break;
    case 'demo-model':
      await demoModelCommand(rest);
      break;
    case 'sites':
    case 'site':
      await sitesCommand(rest, out);
      break;
    case 'diff':
      await diffCommand(rest, out);
      break;
    case 'preview':
      await previewCommand(rest, out, err);
      break;
    case 'approve':
      await approveCommand(rest, out);
      break;
    case 'followup':
      await followupCommand(rest, out);
      break;
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      out(USAGE);
      break;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
} catch (e) {
  if (e instanceof UsageError) {
    const known = ['run', 'demo-model', 'sites', 'site', 'diff', 'preview', 'approve', 'followup'].includes(command ?? '');
    err(`error: ${e.message}\nSee 'pagewright ${known ? `${command} ` : ''}--help' for usage.`);
    process.exitCode = EXIT.usage;
  } else {
    err(`error: ${e instanceof CliError ? e.message : errorLine(e)}`);
    if (process.env.PAGEWRIGHT_DEBUG && e instanceof Error && !(e instanceof CliError)) err(e.stack ?? '');
    process.exitCode = EXIT.failure;
  }
}
