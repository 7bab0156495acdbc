/**
 * What the CLI prints, as pure functions (test/unit/cli-logic.test.ts): kubectl's tables
 * (upper-case headers, columns three spaces apart, AGE as kubectl's HumanDuration writes it),
 * a site's list row and history, and the resolution of a short version against a site's history.
 */
import type { PagewrightSite, SiteHistoryItem } from '../common/site-resource.js';
import { SHA256_PATTERN } from '../common/schemas.js';
import { CliError } from './command.js';

/** Columns padded to their widest cell, three spaces apart, no trailing blanks (kubectl's tabwriter). */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]! + 3)))
        .join('')
        .trimEnd(),
    )
    .join('\n');
}

/** kubectl's AGE (k8s.io/apimachinery duration.HumanDuration). */
export function humanAge(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${Math.floor(days / 365)}y` : `${Math.floor(days / 365)}y${days % 365}d`;
  return `${Math.floor(days / 365)}y`;
}

const short = (version: string | undefined) => (version ? version.slice(0, 12) : '<none>');

function createdAt(site: PagewrightSite): number | null {
  const c = site.metadata.creationTimestamp;
  if (c === undefined) return null;
  const t = (c instanceof Date ? c : new Date(c)).getTime();
  return Number.isNaN(t) ? null : t;
}

/** `pagewright sites list`: the columns `kubectl get pws` prints. */
export function sitesTable(sites: PagewrightSite[], now: Date): string {
  const rows = [['NAME', 'CURRENT', 'PUBLISHED-BY', 'VERSIONS', 'AGE']];
  for (const s of [...sites].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
    const created = createdAt(s);
    rows.push([
      s.metadata.name,
      short(s.status.currentVersion),
      s.status.publishedBy ?? '<none>',
      String(s.status.versions ?? 0),
      created === null ? '<unknown>' : humanAge(now.getTime() - created),
    ]);
  }
  return table(rows);
}

/** Who made a change: the job that published it, or the user who pushed or rolled back. */
export function changedBy(item: SiteHistoryItem): string {
  return item.job ?? item.user ?? '<unknown>';
}

/** `pagewright sites history`: newest first, the current version marked. */
export function historyTable(site: PagewrightSite): string {
  const rows = [['SEQ', 'VERSION', 'ACTION', 'BY', 'TIME', '']];
  for (const h of site.status.history ?? []) {
    rows.push([
      String(h.sequence),
      short(h.version),
      h.action,
      changedBy(h),
      h.time,
      h.version === site.status.currentVersion ? '(current)' : '',
    ]);
  }
  // the first change listed is the current one; later ones with the same version are older states
  let marked = false;
  for (const row of rows.slice(1)) {
    if (row[5] && !marked) marked = true;
    else row[5] = '';
  }
  return table(rows);
}

/**
 * A version as the user wrote it: a full sha256 as is, `current` as is (where allowed), a prefix
 * of at least 4 hex digits resolved against the versions the site's status lists (unique, or
 * an error that says so).
 */
export function resolveVersion(given: string, site: PagewrightSite | null, o: { allowCurrent: boolean }): string {
  if (SHA256_PATTERN.test(given)) return given;
  if (given === 'current' && o.allowCurrent) return given;
  if (!/^[a-f0-9]{4,63}$/.test(given)) throw new CliError(`"${given}" is not a version: a sha256 or a prefix of one (4+ hex digits)`);
  const known = new Set(
    [...(site?.status.history ?? []).map((h) => h.version), site?.status.currentVersion].filter((v) => v !== undefined),
  );
  const matches = [...known].filter((v) => v.startsWith(given));
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0)
    throw new CliError(
      `no version starting with ${given} in the site's recent history (pagewright sites history lists them; pass the full sha256 for an older one)`,
    );
  throw new CliError(`${given} is ambiguous: ${matches.map(short).join(', ')}`);
}
