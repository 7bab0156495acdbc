/**
 * The HTML and link checks of a job's output (issue "trust the change", DESIGN.md "Sites and the
 * review loop"), run by the runner on the tree the agent left, against the base it started from.
 *
 * A check fails on what the change broke, never on what was broken already:
 *   - a page the change did not touch: its parse errors are the base's (reported, not failing);
 *     a link of it that no longer resolves was broken by the change if it resolved in the base
 *     (its target was deleted or moved);
 *   - a page the change modified: the base page is parsed too; a link is introduced when the
 *     base page had no broken link to that target, a parse error when the base page had fewer of
 *     that kind;
 *   - a page the change added: everything found in it is the change's.
 *
 * References resolve as the preview serves a tree (preview/app.ts): a path names a file, or a
 * directory whose index.html exists (with or without its slash). Absolute paths start at the
 * site's root. External URLs (another origin, `mailto:`, `data:`, a `<base>` elsewhere) are not
 * followed; a query or fragment is dropped before the lookup.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { type CheckFinding, type CheckSettings, type FileChange, MAX_MANIFEST_FINDINGS, type ManifestCheck } from '../../common/schemas.js';
import { type ParsedPage, parsePage } from './page.js';

/** The part of a tree snapshot (runner/tree.ts) the checks read: which paths exist, as what. */
export type PathIndex = ReadonlyMap<string, { type: 'file' | 'dir' | 'symlink'; size: number }>;

/**
 * A page larger than this is not parsed but reported: parse5's tree with locations takes tens of
 * times the page's size, and the runner container has 512 MiB.
 */
const MAX_PAGE_BYTES = 2 * 1024 * 1024;

export interface SiteCheckInput {
  /** The output as the agent left it, and the base it started from. */
  output: PathIndex;
  base: PathIndex;
  changes: readonly FileChange[];
  /** The output's tree on disk. */
  outputDir: string;
  /** A modified page's base content (only those are asked for). */
  readBase(path: string): Promise<string>;
  settings: Pick<CheckSettings, 'html' | 'links'>;
}

const ORIGIN = 'https://site.pagewright.invalid';

export function isPage(path: string): boolean {
  return /\.html?$/i.test(path);
}

/**
 * The URL a page's relative references resolve against: the page's own, or its <base>'s. Null
 * when that leaves the site (every relative reference is then external) or does not parse.
 */
function pageBase(page: string, baseHref: string | null): URL | null {
  const pageUrl = new URL(`${ORIGIN}/${page.split('/').map(encodeURIComponent).join('/')}`);
  if (baseHref === null || baseHref.trim() === '') return pageUrl;
  try {
    const base = new URL(baseHref, pageUrl);
    return base.origin === ORIGIN ? base : null;
  } catch {
    return null; // a <base> that does not parse: not ours to guess what a browser makes of it
  }
}

/** A reference from a page with that base: its site path, or null (external, or the page itself). */
function resolveAgainst(base: URL | null, url: string): string | null {
  const trimmed = url.trim();
  if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith('?')) return null;
  // an absolute URL with a scheme leaves the site whatever the base (mailto:, data:, https://...)
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(trimmed) || trimmed.startsWith('//') || base === null) return null;
  let target: URL;
  try {
    target = new URL(trimmed, base);
  } catch {
    return null;
  }
  try {
    return decodeURIComponent(target.pathname).slice(1);
  } catch {
    return target.pathname.slice(1); // a lone "%": the lookup fails on it and reports it
  }
}

/**
 * The site path a reference names ('' is the root), or null when it leaves the site or names
 * the page itself (an empty URL, a lone query or fragment).
 */
export function resolveReference(page: string, url: string, baseHref: string | null): string | null {
  return resolveAgainst(pageBase(page, baseHref), url);
}

/** Whether the site path resolves in the tree, as the preview serves it. */
export function resolves(tree: PathIndex, path: string): boolean {
  const file = path === '' || path.endsWith('/') ? `${path}index.html` : path;
  const entry = tree.get(file);
  if (entry?.type === 'file' || entry?.type === 'symlink') return true;
  return entry?.type === 'dir' && tree.has(`${file}/index.html`);
}

export async function checkSite(input: SiteCheckInput): Promise<ManifestCheck[]> {
  const { settings } = input;
  if (!settings.html && !settings.links) return [];
  const change = new Map(input.changes.map((c) => [c.path, c.change]));
  const pages = [...input.output].filter(([p, e]) => e.type === 'file' && isPage(p)).map(([p, e]) => ({ path: p, size: e.size }));
  const html: CheckFinding[] = [];
  const links: CheckFinding[] = [];
  // reads overlap; parses (CPU) run one at a time on this thread
  const limit = pLimit(16);
  const resolved = new Map<string, string | null>();
  await Promise.all(
    pages.map(({ path, size }) =>
      limit(async () => {
        const kind = change.get(path);
        if (size > MAX_PAGE_BYTES) {
          const finding = {
            path,
            code: 'page-too-large',
            message: `not checked: ${size} bytes is over the ${MAX_PAGE_BYTES} bytes a page may have to be checked`,
            introduced: kind !== undefined,
          };
          (settings.html ? html : links).push(finding);
          return;
        }
        const page = parsePage(await readFile(join(input.outputDir, path), 'utf8'));
        const basePage = kind === 'modified' ? await parsedBase(input, path) : null;
        if (settings.html) html.push(...htmlFindings(path, page, kind, basePage));
        if (settings.links) links.push(...linkFindings(path, page, kind, basePage, input, resolved));
      }),
    ),
  );
  const results: ManifestCheck[] = [];
  if (settings.html) results.push(summarise('html', html));
  if (settings.links) results.push(summarise('links', links));
  return results;
}

async function parsedBase(input: SiteCheckInput, path: string): Promise<ParsedPage | null> {
  const entry = input.base.get(path);
  if (entry?.type !== 'file' || entry.size > MAX_PAGE_BYTES) return null;
  return parsePage(await input.readBase(path));
}

function htmlFindings(path: string, page: ParsedPage, kind: FileChange['change'] | undefined, base: ParsedPage | null): CheckFinding[] {
  const allowance = new Map<string, number>();
  if (kind === 'modified') for (const p of base?.problems ?? []) allowance.set(p.code, (allowance.get(p.code) ?? 0) + 1);
  return page.problems.map((p) => {
    let introduced = kind !== undefined;
    if (kind === 'modified' && (allowance.get(p.code) ?? 0) > 0) {
      allowance.set(p.code, allowance.get(p.code)! - 1);
      introduced = false;
    }
    return { path, line: p.line, column: p.column, code: p.code, message: p.message, introduced };
  });
}

function linkFindings(
  path: string,
  page: ParsedPage,
  kind: FileChange['change'] | undefined,
  base: ParsedPage | null,
  input: SiteCheckInput,
  resolved: Map<string, string | null>,
): CheckFinding[] {
  // pages of one directory share most of their references (a nav, a stylesheet): resolved once
  const resolveFrom = (from: URL | null, url: string) => {
    const key = `${from?.href ?? ''}\0${url}`;
    let target = resolved.get(key);
    if (target === undefined) {
      target = resolveAgainst(from, url);
      resolved.set(key, target);
    }
    return target;
  };
  const brokenInBase = new Set<string>();
  if (kind === 'modified' && base) {
    const from = pageBase(path, base.baseHref);
    for (const ref of base.references) {
      const target = resolveFrom(from, ref.url);
      if (target !== null && !resolves(input.base, target)) brokenInBase.add(target);
    }
  }
  const from = pageBase(path, page.baseHref);
  const findings: CheckFinding[] = [];
  for (const ref of page.references) {
    const target = resolveFrom(from, ref.url);
    if (target === null || resolves(input.output, target)) continue;
    const wasThere = resolves(input.base, target);
    const introduced = kind === undefined ? wasThere : kind === 'added' || !brokenInBase.has(target);
    const why = wasThere ? ` (${JSON.stringify(target || '/')} was deleted by this change)` : '';
    findings.push({
      path,
      line: ref.line,
      column: ref.column,
      code: 'broken-link',
      message: `${ref.attribute} ${JSON.stringify(ref.url)} does not resolve: no file ${JSON.stringify(target || 'index.html')} in the site${why}`,
      introduced,
    });
  }
  return findings;
}

function summarise(name: ManifestCheck['name'], findings: CheckFinding[]): ManifestCheck {
  findings.sort(
    (a, b) =>
      Number(b.introduced) - Number(a.introduced) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0) || (a.line ?? 0) - (b.line ?? 0),
  );
  const introduced = findings.filter((f) => f.introduced).length;
  return {
    name,
    passed: introduced === 0,
    introduced,
    preexisting: findings.length - introduced,
    findings: findings.slice(0, MAX_MANIFEST_FINDINGS).map((f) => ({ ...f, message: f.message.slice(0, 2000) })),
  };
}
