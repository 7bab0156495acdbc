/**
 * `pagewright sites push|pull|list|history|rollback`: a site's versions through the review API
 * (review-client.ts) and its PagewrightSite (common/site-resource.ts), with the user's own
 * kubeconfig and RBAC. A push packs the directory as the runner packs a site (runner/archive.ts:
 * sorted, links kept as links, no owners), so what the review API refuses (a link leaving the
 * site: UnsafeArchive) is what a runner would refuse; nothing is stored then. A pull checks
 * that the bytes it got hash to the version the API named, and unpacks them with the runner's
 * safe unpack into a new or empty directory.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { DEFAULT_ARCHIVE_LIMITS } from '../common/archive-rules.js';
import { GROUP, VERSION } from '../common/job-resource.js';
import { SITE_ID_PATTERN } from '../common/schemas.js';
import { PagewrightSite, SITE_PLURAL, createSiteIfAbsent } from '../common/site-resource.js';
import { Sha256Counter, packDirectory, unpackArchive } from '../runner/archive.js';
import { CliError, type Parsed, UsageError, outputFormat, parseCommand } from './command.js';
import { historyTable, resolveVersion, sitesTable } from './format.js';
import { type KubeTarget, loadKube } from './kube-context.js';
import { ReviewClient } from './review-client.js';

const COMMON_FLAGS = `  -n, --namespace NS   the namespace (default: the context's, else default)
      --kubeconfig FILE  the kubeconfig (default: $KUBECONFIG, else ~/.kube/config)
      --context NAME   the kubeconfig context (default: its current context)
  -h, --help           this help`;

const SITES_USAGE = `usage: pagewright sites push NAME DIR        push DIR as the site's new version (creates the PagewrightSite if absent)
       pagewright sites pull NAME [--version V] DIR   unpack a version (default: the current one) into DIR (new or empty)
       pagewright sites list [-o json]         the namespace's sites (like kubectl get pws)
       pagewright sites history NAME [-o json]  the site's latest changes: version, action, by whom, when
       pagewright sites rollback NAME [--to V]  make V (default: the version before the current one) current again

A version is a sha256 or, where the site's history lists it, a prefix of one (4+ hex digits).

flags of every command:
${COMMON_FLAGS}`;

type Write = (line: string) => void;

export async function sitesCommand(argv: string[], out: Write): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'push':
      return push(rest, out);
    case 'pull':
      return pull(rest, out);
    case 'list':
    case 'ls':
      return list(rest, out);
    case 'history':
      return history(rest, out);
    case 'rollback':
      return rollback(rest, out);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      out(SITES_USAGE);
      return;
    default:
      throw new UsageError(`unknown command "sites ${sub}"`);
  }
}

/** Parses a `sites` verb; null when it printed its help. */
function parsed(
  argv: string[],
  out: Write,
  options: Parameters<typeof parseCommand>[1],
  operands: Parameters<typeof parseCommand>[2],
): Parsed | null {
  const p = parseCommand(argv, options, operands);
  if (p.help) {
    out(SITES_USAGE);
    return null;
  }
  return p;
}

function siteName(name: string): string {
  if (!SITE_ID_PATTERN.test(name))
    throw new CliError(`"${name}" is not a site name: a DNS label (lowercase letters, digits and "-", up to 63)`);
  return name;
}

function customApi(target: KubeTarget): CustomObjectsApi {
  return target.kc.makeApiClient(CustomObjectsApi);
}

export async function readSite(target: KubeTarget, name: string): Promise<PagewrightSite> {
  const raw = await customApi(target).getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: SITE_PLURAL,
    namespace: target.namespace,
    name,
  });
  return PagewrightSite.parse(raw);
}

async function push(argv: string[], out: Write): Promise<void> {
  const p = parsed(argv, out, {}, { min: 2, max: 2, names: 'NAME DIR' });
  if (!p) return;
  const [name, dir] = [siteName(p.positionals[0]!), resolve(p.positionals[1]!)];
  if (!(await stat(dir).catch(() => null))?.isDirectory()) throw new CliError(`${p.positionals[1]} is not a directory`);
  const target = loadKube(p.kube);
  await createSiteIfAbsent(customApi(target), target.namespace, name);
  const scratch = await mkdtemp(join(tmpdir(), 'pagewright-push-'));
  try {
    const archive = join(scratch, 'site.tar.gz');
    const packed = await packDirectory(dir, archive);
    const { version } = await new ReviewClient(target).pushVersion(name, createReadStream(archive), packed.size);
    out(`pushed ${dir} to site ${name} in namespace ${target.namespace}: version ${version}`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function pull(argv: string[], out: Write): Promise<void> {
  const p = parsed(argv, out, { version: { type: 'string' } }, { min: 2, max: 2, names: 'NAME DIR' });
  if (!p) return;
  const [name, dir] = [siteName(p.positionals[0]!), resolve(p.positionals[1]!)];
  const existing = await stat(dir).catch(() => null);
  if (existing && !existing.isDirectory()) throw new CliError(`${p.positionals[1]} exists and is not a directory`);
  const target = loadKube(p.kube);
  const given = typeof p.values.version === 'string' ? p.values.version : 'current';
  const wanted = /^[a-f0-9]{64}$|^current$/.test(given)
    ? given
    : resolveVersion(given, await readSite(target, name), { allowCurrent: true });
  const scratch = await mkdtemp(join(tmpdir(), 'pagewright-pull-'));
  try {
    const archive = join(scratch, 'site.tar.gz');
    const { version, body } = await new ReviewClient(target).pullVersion(name, wanted);
    const meter = new Sha256Counter();
    await pipeline(body, meter, createWriteStream(archive));
    if (meter.digest() !== version) throw new CliError(`the pulled archive does not hash to version ${version}: not unpacked`);
    try {
      await unpackArchive(archive, dir, DEFAULT_ARCHIVE_LIMITS);
    } catch (err) {
      throw new CliError(/not empty/.test((err as Error).message) ? `${p.positionals[1]} is not empty` : (err as Error).message);
    }
    out(`pulled version ${version} of site ${name} into ${dir}`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function list(argv: string[], out: Write): Promise<void> {
  const p = parsed(argv, out, { output: { type: 'string', short: 'o' } }, { min: 0, max: 0, names: 'no operands' });
  if (!p) return;
  const format = outputFormat(p.values.output);
  const target = loadKube(p.kube);
  const raw = (await customApi(target).listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: SITE_PLURAL,
    namespace: target.namespace,
  })) as {
    items?: unknown[];
  };
  const sites = (raw.items ?? []).map((i) => PagewrightSite.parse(i));
  if (format === 'json') out(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: raw.items ?? [] }, null, 2));
  else if (sites.length === 0) out(`No sites found in ${target.namespace} namespace.`);
  else out(sitesTable(sites, new Date()));
}

async function history(argv: string[], out: Write): Promise<void> {
  const p = parsed(argv, out, { output: { type: 'string', short: 'o' } }, { min: 1, max: 1, names: 'NAME' });
  if (!p) return;
  const format = outputFormat(p.values.output);
  const name = siteName(p.positionals[0]!);
  const site = await readSite(loadKube(p.kube), name);
  if (format === 'json') out(JSON.stringify(site.status.history ?? [], null, 2));
  else if (!site.status.history?.length) out(`site ${name} has no versions yet`);
  else out(historyTable(site));
}

async function rollback(argv: string[], out: Write): Promise<void> {
  const p = parsed(argv, out, { to: { type: 'string' } }, { min: 1, max: 1, names: 'NAME' });
  if (!p) return;
  const name = siteName(p.positionals[0]!);
  const target = loadKube(p.kube);
  const given = typeof p.values.to === 'string' ? p.values.to : undefined;
  const to =
    given === undefined || /^[a-f0-9]{64}$/.test(given)
      ? given
      : resolveVersion(given, await readSite(target, name), { allowCurrent: false });
  const done = await new ReviewClient(target).rollback(name, to);
  out(`rolled back site ${name} to version ${done.version} (was ${done.previousVersion})`);
}
