import { expect } from 'chai';
import { outputModes } from '../../runner/file-modes.js';
import { type Tree, diffTrees } from '../../runner/tree.js';

type Entry = [type: 'file' | 'dir' | 'symlink', mode: number, sha?: string];
const tree = (entries: Record<string, Entry>): Tree =>
  new Map(Object.entries(entries).map(([path, [type, mode, sha]]) => [path, { type, mode, size: 0, sha256: sha ?? path, statKey: '' }]));
const octal = (modes: ReturnType<typeof outputModes>, paths: string[]) =>
  Object.fromEntries(paths.map((p) => [p, modes.of(p).toString(8)]));

describe('output file modes (runner/file-modes.ts)', () => {
  const input = new Map(
    Object.entries({ 'a.html': 0o664, 'ro.txt': 0o444, 'run.sh': 0o750, docs: 0o750, 'docs/b.html': 0o600, ln: 0o777 }),
  );

  it('in a pod (shared): the input modes for what the agent left, whatever the runner set on disk', () => {
    // on disk after unpack: the group bits the runner added (files g+rw, directories g+rwx setgid)
    const before = tree({
      'a.html': ['file', 0o664],
      'ro.txt': ['file', 0o464],
      'run.sh': ['file', 0o770],
      docs: ['dir', 0o2770],
      'docs/b.html': ['file', 0o660],
      ln: ['symlink', 0o777],
    });
    const after = tree({
      'a.html': ['file', 0o664, 'edited'], // edited in place
      'ro.txt': ['file', 0o444, 'rewritten'], // replaced under the agent's umask 022 (sed -i)
      'run.sh': ['file', 0o770],
      docs: ['dir', 0o2770],
      'docs/b.html': ['file', 0o660],
      ln: ['symlink', 0o777],
      'new.html': ['file', 0o664],
      'tool.sh': ['file', 0o775],
      'new-dir': ['dir', 0o2775],
      'new-ln': ['symlink', 0o777],
    });
    const modes = outputModes(input, before, after, true);
    expect(octal(modes, [...after.keys()])).to.deep.equal({
      'a.html': '664',
      'ro.txt': '444',
      'run.sh': '750',
      docs: '750',
      'docs/b.html': '600',
      ln: '777',
      'new.html': '644',
      'tool.sh': '755',
      'new-dir': '755',
      'new-ln': '777',
    });
    expect([...after.keys()].filter(modes.changed)).to.deep.equal([]);
    expect(diffTrees(before, after, modes.changed)).to.deep.equal([
      { path: 'a.html', change: 'modified' },
      { path: 'new-ln', change: 'added' },
      { path: 'new.html', change: 'added' },
      { path: 'ro.txt', change: 'modified' },
      { path: 'tool.sh', change: 'added' },
    ]);
  });

  it('keeps the bits the agent changed itself (chmod), and counts a mode-only change as modified', () => {
    const before = tree({ 'a.html': ['file', 0o664], 'run.sh': ['file', 0o770], docs: ['dir', 0o2770], 'docs/b.html': ['file', 0o660] });
    const after = tree({
      'a.html': ['file', 0o775], // chmod +x
      'run.sh': ['file', 0o700, 'edited'], // chmod go-rx, and edited: g-r is not carried (below)
      docs: ['dir', 0o2775], // chmod o+rx
      'docs/b.html': ['file', 0o660],
    });
    const modes = outputModes(input, before, after, true);
    // group read and write are the runner's to set in a pod: the agent's changes to them cannot be
    // told from its umask when it rewrites a file, so they are not carried; group x and the rest are
    expect(octal(modes, [...after.keys()])).to.deep.equal({ 'a.html': '775', 'run.sh': '740', docs: '755', 'docs/b.html': '600' });
    expect(diffTrees(before, after, modes.changed)).to.deep.equal([
      { path: 'a.html', change: 'modified' },
      { path: 'run.sh', change: 'modified' },
    ]);
  });

  it('without sharing (the runner alone, umask 022 on disk): every bit the agent changed counts', () => {
    const before = tree({ 'a.html': ['file', 0o644], 'ro.txt': ['file', 0o444] });
    const after = tree({ 'a.html': ['file', 0o664], 'ro.txt': ['file', 0o444, 'edited'] });
    const modes = outputModes(input, before, after, false);
    // a.html was 0664 in the input and on disk 0644 (umask): the agent's g+w gives 0664, the input's mode
    expect(octal(modes, ['a.html', 'ro.txt'])).to.deep.equal({ 'a.html': '664', 'ro.txt': '444' });
    expect(['a.html', 'ro.txt'].filter(modes.changed)).to.deep.equal([]);
  });

  it('a path that changed type, or that the input did not list, gets the ordinary modes', () => {
    const before = tree({ 'a.html': ['file', 0o664], docs: ['dir', 0o2770] });
    const after = tree({ 'a.html': ['dir', 0o2775], docs: ['file', 0o700], implied: ['dir', 0o2775] });
    expect(octal(outputModes(input, before, after, true), ['a.html', 'docs', 'implied'])).to.deep.equal({
      'a.html': '755',
      docs: '755',
      implied: '755',
    });
  });
});
