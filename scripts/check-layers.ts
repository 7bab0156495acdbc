/**
 * The house layout (notes/style.md), checked on every build: `npm run build`, `make typecheck`.
 *   - nothing outside test/ and bench/ imports from test/ (the images do not ship test/, so a
 *     product import of test code builds here and breaks in `docker build`: it did, for the
 *     scripted model);
 *   - the services (storage/, runner/, manager/, gateway/, preview/, screenshot/) import neither each other nor cli/;
 *   - common/ imports none of them: it is the ground floor.
 * It reads relative import specifiers (static, `export ... from`, literal `import()` and
 * `require()`) line by line; a package or a computed specifier is not a layer crossing it can see.
 *
 *   node scripts/check-layers.ts [ROOT]   exit 1 and one line per violation, else silent
 *
 * Runs on Node's own type stripping (no compile step, so it can run before tsc): erasable
 * TypeScript only.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const SERVICES = ['storage', 'runner', 'manager', 'gateway', 'preview', 'screenshot'];
/** Folders whose files may import test code. */
const TEST_SIDE = ['test', 'bench'];
const SKIP = new Set(['node_modules', 'dist', 'coverage', 'pagewright-output']);
const SOURCE = /\.(?:[cm]?ts|[cm]?js)$/;
const SPECIFIERS = [
  /\bfrom\s*['"]([^'"]+)['"]/g,
  /^\s*import\s*['"]([^'"]+)['"]/g,
  /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
];

export interface Violation {
  /** Relative to the root, with / separators. */
  file: string;
  line: number;
  specifier: string;
  rule: string;
}

export function checkLayers(root: string): Violation[] {
  const violations: Violation[] = [];
  for (const file of sourceFiles(root, root)) {
    const from = topFolder(root, file);
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((text, i) => {
      if (/^\s*(?:\/\/|\*|\/\*)/.test(text)) return; // comments mention paths too
      for (const pattern of SPECIFIERS) {
        for (const match of text.matchAll(pattern)) {
          const specifier = match[1]!;
          if (!specifier.startsWith('.')) continue;
          const to = topFolder(root, resolve(dirname(file), specifier));
          const rule = crossing(from, to);
          if (rule) violations.push({ file: relative(root, file).split(sep).join('/'), line: i + 1, specifier, rule });
        }
      }
    });
  }
  return violations;
}

function crossing(from: string | null, to: string | null): string | null {
  if (from === null || to === null || from === to) return null;
  if (to === 'test' && !TEST_SIDE.includes(from)) return 'only test/ and bench/ may import from test/';
  if (SERVICES.includes(from) && (SERVICES.includes(to) || to === 'cli'))
    return `${from}/ is a service: it imports common/ only, never ${to}/`;
  if (from === 'common' && (SERVICES.includes(to) || ['cli', 'test', 'bench'].includes(to)))
    return `common/ is the ground floor: it never imports ${to}/`;
  return null;
}

/** The first path segment under root, or null for the root itself and anything outside it. */
function topFolder(root: string, path: string): string | null {
  const parts = relative(root, path).split(sep);
  if (parts.length < 2 || parts[0] === '..' || parts[0] === '') return null;
  return parts[0]!;
}

function* sourceFiles(root: string, dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || SKIP.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(root, path);
    else if (entry.isFile() && SOURCE.test(entry.name) && dir !== root) yield path;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
  const found = checkLayers(root);
  for (const v of found) process.stderr.write(`${v.file}:${v.line}: imports '${v.specifier}': ${v.rule}\n`);
  if (found.length > 0) {
    process.stderr.write(`check-layers: ${found.length} import(s) cross the layout (notes/style.md, "House layout")\n`);
    process.exitCode = 1;
  }
}
