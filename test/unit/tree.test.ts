import { mkdir, mkdtemp, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { isCodexPath } from '../../runner/codex-dir.js';
import { diffTrees, snapshotTree } from '../../runner/tree.js';

describe('tree snapshots and diff', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'pw-tree-'));
    await mkdir(join(root, 'css'));
    await mkdir(join(root, '.codex'));
    await writeFile(join(root, 'index.html'), '<h1>a</h1>');
    await writeFile(join(root, 'about.html'), 'about');
    await writeFile(join(root, 'css/site.css'), 'body{}');
    await writeFile(join(root, '.codex/instructions.md'), 'site instructions');
    await symlink('index.html', join(root, 'home.html'));
  });
  afterEach(async () => rm(root, { recursive: true, force: true }));

  it('finds added, modified and deleted files and links, and ignores .codex/', async () => {
    const before = await snapshotTree(root, { exclude: isCodexPath });
    expect([...before.keys()]).to.deep.equal(['about.html', 'css', 'css/site.css', 'home.html', 'index.html']);
    await writeFile(join(root, 'index.html'), '<h1>b</h1>');
    await unlink(join(root, 'about.html'));
    await writeFile(join(root, 'css/new.css'), 'p{}');
    await unlink(join(root, 'home.html'));
    await symlink('css/site.css', join(root, 'home.html'));
    await writeFile(join(root, '.codex/instructions.md'), 'changed by the agent');
    await mkdir(join(root, 'empty-dir'));
    const after = await snapshotTree(root, { exclude: isCodexPath, previous: before });
    expect(diffTrees(before, after)).to.deep.equal([
      { path: 'about.html', change: 'deleted' },
      { path: 'css/new.css', change: 'added' },
      { path: 'home.html', change: 'modified' },
      { path: 'index.html', change: 'modified' },
    ]);
  });

  it('reports nothing when nothing changed, and a same-size rewrite as a change', async () => {
    const before = await snapshotTree(root);
    expect(diffTrees(before, await snapshotTree(root, { previous: before }))).to.deep.equal([]);
    await new Promise((r) => setTimeout(r, 10));
    await writeFile(join(root, 'index.html'), '<h1>z</h1>');
    expect(diffTrees(before, await snapshotTree(root, { previous: before }))).to.deep.equal([{ path: 'index.html', change: 'modified' }]);
  });
});
