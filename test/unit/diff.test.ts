/**
 * runner/diff.ts against real trees: the patch is compared with what git itself prints for the
 * same two trees (`git diff --no-index`), applied with `git apply` onto a copy of the base tree
 * (which must then equal the output tree), its counts checked against `git diff --numstat`, and
 * parsed by the review page's renderer.
 */
import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { DiffSummary } from '../../common/schemas.js';
import { parseDiff } from '../../preview/diff-render.js';
import { isCodexPath } from '../../runner/codex-dir.js';
import { type SiteDiffOptions, writeSiteDiff } from '../../runner/diff.js';

const run = promisify(execFile);

type Spec = Record<string, string | Buffer | { symlink: string } | { exec: string }>;

async function writeTree(root: string, files: Spec): Promise<void> {
  await mkdir(root, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    const full = join(root, path);
    await mkdir(dirname(full), { recursive: true });
    if (typeof content === 'object' && 'symlink' in content) await symlink(content.symlink, full);
    else if (typeof content === 'object' && 'exec' in content) {
      await writeFile(full, content.exec);
      await chmod(full, 0o755);
    } else await writeFile(full, content);
  }
}

/** git's own diff of the two trees, with its no-index paths (a/base/x, b/output/x) made a/x and b/x. */
async function gitDiff(scratch: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(
    'git',
    ['-c', 'core.quotePath=false', 'diff', '--no-index', '--no-indent-heuristic', '--no-renames', '--no-color', ...args, 'base', 'output'],
    { cwd: scratch, maxBuffer: 1 << 28 },
  ).catch((e: { stdout: string; code: number }) => {
    if (e.code !== 1) throw e;
    return e;
  });
  return stdout.replace(/(^|\s|")([ab])\/(base|output)\//gm, '$1$2/');
}

/** Applies the patch with `git apply` to a copy of base; binary files are taken from the output. */
async function applyTo(scratch: string, patch: string, binaries: string[] = []): Promise<string> {
  const copy = join(scratch, 'applied');
  await rm(copy, { recursive: true, force: true });
  await cp(join(scratch, 'base'), copy, { recursive: true, verbatimSymlinks: true });
  await run('git', ['apply', ...binaries.map((b) => `--exclude=${b}`), patch], { cwd: copy });
  for (const b of binaries) {
    await rm(join(copy, b), { force: true });
    await cp(join(scratch, 'output', b), join(copy, b)).catch(() => {}); // a deleted binary stays deleted
  }
  return copy;
}

/** Whether two trees are the same, contents, modes and links (git's own comparison). */
async function sameTrees(a: string, b: string): Promise<string> {
  const { stdout } = await run('git', ['diff', '--no-index', '--stat', a, b]).catch((e: { stdout: string }) => e);
  return stdout;
}

async function numstat(scratch: string): Promise<{ added: number; removed: number }> {
  const text = await gitDiff(scratch, '--numstat');
  let added = 0;
  let removed = 0;
  for (const line of text.trim().split('\n')) {
    const [a, r] = line.split('\t');
    if (a === '-') continue; // binary
    added += Number(a);
    removed += Number(r);
  }
  return { added, removed };
}

const BASE_PAGE =
  '<!doctype html>\n<h1>Harbor Lane Bakery</h1>\n<p>Open daily from 7 to 18.</p>\n<p>Sourdough</p>\n<p>Croissant</p>\n<p>Baguette</p>\n<p>Rye</p>\n<footer>2025</footer>\n';
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex');

const BASE: Spec = {
  'index.html': BASE_PAGE,
  'about.html': 'about us\nsince 1921\n',
  'gone.txt': 'this file is deleted\nwith two lines\n',
  'css/site.css': 'body { color: black; }\n',
  'img/logo.png': PNG,
  'img/old.png': PNG,
  'scripts/build.sh': 'echo build\n',
  'no-newline.txt': 'first\nlast without newline',
  'unicode/café.txt': 'crème brûlée\n',
  'latest.html': { symlink: 'index.html' },
  'becomes-link.html': 'a file that becomes a link\n',
  'dir-or-file': 'a file that becomes a directory\n',
  'empty-then-full.txt': '',
  '.codex/instructions.md': 'the site instructions\n',
};

const OUTPUT: Spec = {
  'index.html': BASE_PAGE.replace(
    '<p>Open daily from 7 to 18.</p>\n',
    '<p>Open daily from 7 to 18.</p>\n<p>Closed from December 24 to 26.</p>\n',
  ).replace('<footer>2025</footer>', '<footer>2026</footer>'),
  'about.html': 'about us\nsince 1921\n',
  'css/site.css': 'body { color: #222; }\n',
  'img/logo.png': Buffer.concat([PNG, Buffer.from([0, 1, 2])]),
  'img/new.png': PNG,
  'scripts/build.sh': { exec: 'echo build\n' },
  'no-newline.txt': 'first\nlast, still without newline',
  'unicode/café.txt': 'crème brûlée ☕\n',
  'unicode/日本語.html': '<p>こんにちは</p>\n',
  'latest.html': { symlink: 'about.html' },
  'becomes-link.html': { symlink: 'index.html' },
  'dir-or-file/inside.txt': 'now a directory\n',
  'empty-then-full.txt': 'full\n',
  'new-empty.txt': '',
  'news.html': '<h1>Holiday hours</h1>\n',
  '.codex/instructions.md': 'changed by the agent: never in the diff\n',
};

describe('runner/diff.ts: the site diff (diff.patch)', function () {
  this.timeout(30_000);
  let scratch: string;
  beforeEach(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'pw-diff-'));
  });
  afterEach(async () => rm(scratch, { recursive: true, force: true }));

  async function diff(base: Spec, output: Spec, opts: Partial<SiteDiffOptions> = {}): Promise<{ patch: string; summary: DiffSummary }> {
    await writeTree(join(scratch, 'base'), base);
    await writeTree(join(scratch, 'output'), output);
    const summary = await writeSiteDiff(join(scratch, 'base'), join(scratch, 'output'), join(scratch, 'diff.patch'), {
      maxBytes: 4 * 1024 * 1024,
      ...opts,
    });
    return { patch: await readFile(join(scratch, 'diff.patch'), 'utf8'), summary };
  }

  it('prints what git diff --no-index prints for the same trees (plus a size and sha256 line per binary)', async () => {
    const { patch } = await diff(BASE, OUTPUT, { exclude: isCodexPath });
    // git has no exclude: give it the trees without .codex/
    await rm(join(scratch, 'base/.codex'), { recursive: true });
    await rm(join(scratch, 'output/.codex'), { recursive: true });
    const ours = patch
      .split('\n')
      .filter((l) => !l.startsWith('# binary: '))
      .join('\n');
    expect(ours).to.equal(await gitDiff(scratch));
    expect(patch).to.contain('diff --git a/unicode/café.txt b/unicode/café.txt\n');
    expect(patch).to.contain('old mode 100644\nnew mode 100755\n');
    expect(patch).to.contain(
      '-last without newline\n\\ No newline at end of file\n+last, still without newline\n\\ No newline at end of file\n',
    );
    expect(patch).not.to.contain('.codex');
  });

  it('applies with git apply onto a copy of the base tree, which then equals the output tree', async () => {
    await diff(BASE, OUTPUT, { exclude: isCodexPath });
    const applied = await applyTo(scratch, join(scratch, 'diff.patch'), ['img/logo.png', 'img/new.png', 'img/old.png']);
    await rm(join(applied, '.codex'), { recursive: true });
    await rm(join(scratch, 'output/.codex'), { recursive: true });
    expect(await sameTrees(applied, join(scratch, 'output'))).to.equal('');
    expect((await stat(join(applied, 'scripts/build.sh'))).mode & 0o111).to.not.equal(0);
  });

  it('counts files and lines exactly, as git --numstat does', async () => {
    const { summary } = await diff(BASE, OUTPUT, { exclude: isCodexPath });
    await rm(join(scratch, 'base/.codex'), { recursive: true });
    await rm(join(scratch, 'output/.codex'), { recursive: true });
    const git = await numstat(scratch);
    expect(summary).to.deep.equal({
      // img/new.png, unicode/日本語.html, dir-or-file/inside.txt, new-empty.txt, news.html
      filesAdded: 5,
      // index, css, logo, build.sh (mode), no-newline, café, latest (link), becomes-link (type), empty-then-full
      filesModified: 9,
      // gone.txt, img/old.png, dir-or-file (the file)
      filesDeleted: 3,
      linesAdded: git.added,
      linesRemoved: git.removed,
      truncated: false,
    });
    expect(summary.linesAdded).to.be.greaterThan(5);
  });

  it('lists binaries with both sizes and sha256, and takes invalid UTF-8 as binary', async () => {
    const latin1 = Buffer.from('caf\xe9\n', 'latin1');
    const { patch, summary } = await diff(
      { 'img/logo.png': PNG, 'old.txt': 'x\n' },
      { 'img/logo.png': PNG.subarray(0, 8), 'old.txt': latin1 },
    );
    expect(patch).to.contain('Binary files a/img/logo.png and b/img/logo.png differ\n');
    expect(patch).to.match(/^# binary: a\/img\/logo\.png \d+ bytes, sha256 [0-9a-f]{64}, b\/img\/logo\.png 8 bytes, sha256 [0-9a-f]{64}$/m);
    expect(patch).to.contain('Binary files a/old.txt and b/old.txt differ\n');
    expect(summary).to.include({ filesModified: 2, linesAdded: 0, linesRemoved: 0 });
    // the review page sees them as binary files, under their paths
    expect(parseDiff(patch).map((f) => [f.path, f.status])).to.deep.equal([
      ['img/logo.png', 'binary'],
      ['old.txt', 'binary'],
    ]);
  });

  it('is empty for two equal trees', async () => {
    const { patch, summary } = await diff(BASE, BASE);
    expect(patch).to.equal('');
    expect(summary).to.deep.equal({ filesAdded: 0, filesModified: 0, filesDeleted: 0, linesAdded: 0, linesRemoved: 0, truncated: false });
  });

  it('is cut at maxBytes at a line end, says so, and still counts every file', async () => {
    const base: Spec = {};
    const output: Spec = {};
    for (let i = 0; i < 200; i++) {
      const lines = Array.from({ length: 40 }, (_, j) => `line ${j} of page ${i}`);
      base[`pages/p${String(i).padStart(3, '0')}.html`] = `${lines.join('\n')}\n`;
      output[`pages/p${String(i).padStart(3, '0')}.html`] = `${lines.map((l, j) => (j % 10 === 5 ? `${l} edited` : l)).join('\n')}\n`;
    }
    const whole = await diff(base, output);
    expect(whole.summary).to.include({ filesModified: 200, linesAdded: 800, linesRemoved: 800, truncated: false });
    await rm(join(scratch, 'base'), { recursive: true });
    await rm(join(scratch, 'output'), { recursive: true });
    const cut = await diff(base, output, { maxBytes: 20_000 });
    expect(cut.summary).to.deep.equal({ ...whole.summary, truncated: true });
    expect(Buffer.byteLength(cut.patch)).to.be.at.most(20_000);
    const note = cut.patch.split('\n').at(-2)!;
    expect(note).to.match(/^# diff\.patch cut at 20000 bytes \(PAGEWRIGHT_MAX_DIFF_BYTES\): \d+ of 200 changed files shown in full/);
    // everything before the note is the whole patch's beginning, cut after a full line
    const body = cut.patch.slice(0, cut.patch.length - note.length - 1);
    expect(whole.patch.startsWith(body)).to.equal(true);
    expect(body.endsWith('\n')).to.equal(true);
    // the review page renders the files before the cut, and the cut one raw
    const files = parseDiff(cut.patch);
    expect(files.length).to.be.greaterThan(5);
    expect(files.slice(0, -1).every((f) => f.hunks.length > 0 && !f.raw)).to.equal(true);
  });

  it('compares only the paths it is given, with the modes it is given', async () => {
    const { patch, summary } = await diff(
      { 'a.txt': 'a\n', 'b.txt': 'b\n', 'run.sh': 'x\n' },
      { 'a.txt': 'A\n', 'b.txt': 'B\n', 'run.sh': 'x\n' },
      { paths: ['b.txt', 'run.sh', 'missing.txt'], outputMode: (p) => (p === 'run.sh' ? 0o755 : undefined) },
    );
    expect(summary).to.include({ filesModified: 2, linesAdded: 1, linesRemoved: 1 });
    expect(patch).not.to.contain('a.txt');
    expect(patch).to.contain('diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n');
  });

  it('writes a rewrite too costly to shorten as all lines removed and added: still applies', async () => {
    const lines = (seed: string) => `${Array.from({ length: 60_000 }, (_, i) => `${seed}${(i * 7919) % 100_003}`).join('\n')}\n`;
    const started = Date.now();
    const { summary } = await diff({ 'big.txt': lines('a'), 'small.txt': 'x\n' }, { 'big.txt': lines('b'), 'small.txt': 'y\n' });
    expect(Date.now() - started, 'bounded by the edit budget').to.be.below(10_000);
    expect(summary).to.include({ filesModified: 2, linesAdded: 60_001, linesRemoved: 60_001 });
    const applied = await applyTo(scratch, join(scratch, 'diff.patch'));
    expect(await sameTrees(applied, join(scratch, 'output'))).to.equal('');
  });

  it('quotes paths as git does (a tab, a quote, a space)', async () => {
    const { patch } = await diff({}, { 'tab\there.txt': 'x\n', 'say "hi".txt': 'y\n', 'with space.txt': 'z\n' });
    expect(patch).to.equal(await gitDiff(scratch));
    const applied = await applyTo(scratch, join(scratch, 'diff.patch'));
    expect(await sameTrees(applied, join(scratch, 'output'))).to.equal('');
  });
});
