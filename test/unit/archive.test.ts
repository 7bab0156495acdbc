import { chmod, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { expect } from 'chai';
import { list } from 'tar';
import { entryViolation } from '../../common/archive-rules.js';
import { PagewrightError } from '../../common/errors.js';
import { packArchive, unpackArchive } from '../../runner/archive.js';
import { type ForgedEntry, forgeTarGz } from '../support/tar-forge.js';

const LIMITS = { maxEntries: 5000, maxBytes: 512 * 1024 * 1024 };

describe('entryViolation', () => {
  const ok = (e: { path: string; type: string; linkpath?: string }) => expect(entryViolation(e), e.path).to.equal(null);
  const bad = (e: { path: string; type: string; linkpath?: string }, re: RegExp) => expect(entryViolation(e)).to.match(re);
  it('accepts ordinary entries and links that point down', () => {
    ok({ path: 'index.html', type: 'File' });
    ok({ path: 'css/', type: 'Directory' });
    ok({ path: './a/b.txt', type: 'File' });
    ok({ path: 'latest', type: 'SymbolicLink', linkpath: 'v2/index.html' });
    ok({ path: 'copy.html', type: 'Link', linkpath: 'index.html' });
    ok({ path: 'a..b.txt', type: 'File' });
  });
  it('rejects escapes, devices and odd types', () => {
    bad({ path: '/etc/passwd', type: 'File' }, /absolute/);
    bad({ path: '../x', type: 'File' }, /climbs/);
    bad({ path: 'a/../../x', type: 'File' }, /climbs/);
    bad({ path: 'a\\..\\x', type: 'File' }, /climbs/);
    bad({ path: 'C:\\x', type: 'File' }, /absolute/);
    bad({ path: 'l', type: 'SymbolicLink', linkpath: '/etc' }, /absolute/);
    bad({ path: 'l', type: 'SymbolicLink', linkpath: '../x' }, /climbs/);
    bad({ path: 'sub/l', type: 'SymbolicLink', linkpath: '..' }, /climbs/);
    bad({ path: 'h', type: 'Link', linkpath: '/etc/passwd' }, /outside/);
    bad({ path: 'h', type: 'Link', linkpath: 'a/../../etc/passwd' }, /climbs/);
    bad({ path: 'dev', type: 'CharacterDevice' }, /not allowed/);
    bad({ path: 'fifo', type: 'FIFO' }, /not allowed/);
  });
});

describe('unpackArchive: hostile archives', function () {
  this.timeout(120_000);
  let root: string;
  let work: string;
  let outside: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'pw-hostile-'));
    work = join(root, 'work');
    outside = join(root, 'outside');
    await mkdir(work);
    await mkdir(outside);
  });
  afterEach(async () => rm(root, { recursive: true, force: true }));

  async function expectRejected(entries: ForgedEntry[] | (() => Iterable<ForgedEntry>), reason: string, message: RegExp, limits = LIMITS) {
    const archive = join(work, 'input.tar.gz');
    await forgeTarGz(archive, entries);
    const outsideBefore = await readdir(outside);
    const err = await unpackArchive(archive, join(work, 'site'), limits).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err, 'the archive was accepted').to.be.instanceOf(PagewrightError);
    expect((err as PagewrightError).code).to.equal(reason);
    expect((err as PagewrightError).message).to.match(message);
    // nothing was written: not outside, and not even the destination
    expect(await readdir(root)).to.have.members(['work', 'outside']);
    expect(await readdir(work)).to.deep.equal(['input.tar.gz']);
    expect(await readdir(outside)).to.deep.equal(outsideBefore);
    return err as PagewrightError;
  }

  it('rejects a ../ entry', async () => {
    await expectRejected(
      [
        { path: 'index.html', content: 'hi' },
        { path: '../outside/evil.txt', content: 'pwned' },
      ],
      'UnsafeArchive',
      /"\.\.\/outside\/evil\.txt": path climbs/,
    );
  });

  it('rejects an absolute path', async () => {
    const target = join(outside, 'abs.txt');
    await expectRejected([{ path: target, content: 'pwned' }], 'UnsafeArchive', /absolute path/);
  });

  it('rejects a symlink escaping the tree, and so never writes through it', async () => {
    await expectRejected(
      [
        { path: 'escape', type: 'symlink', linkpath: outside },
        { path: 'escape/evil.txt', content: 'pwned' },
      ],
      'UnsafeArchive',
      /symlink to absolute path/,
    );
    await expectRejected(
      [
        { path: 'escape', type: 'symlink', linkpath: '../../outside' },
        { path: 'escape/evil.txt', content: 'pwned' },
      ],
      'UnsafeArchive',
      /climbs/,
    );
  });

  it('rejects a symlink chain that climbs one level at a time', async () => {
    await expectRejected(
      [
        { path: 'a/', type: 'dir' },
        { path: 'a/up', type: 'symlink', linkpath: '..' },
        { path: 'a/esc', type: 'symlink', linkpath: 'up/..' },
        { path: 'a/esc/evil.txt', content: 'pwned' },
      ],
      'UnsafeArchive',
      /climbs/,
    );
  });

  it('rejects a hard link to a file outside', async () => {
    await writeFile(join(outside, 'secret'), 'secret');
    await expectRejected([{ path: 'hl', type: 'hardlink', linkpath: join(outside, 'secret') }], 'UnsafeArchive', /hard link to .* outside/);
    await expectRejected([{ path: 'hl', type: 'hardlink', linkpath: '../outside/secret' }], 'UnsafeArchive', /hard link target .* climbs/);
    const secret = await stat(join(outside, 'secret'));
    expect(secret.nlink).to.equal(1);
  });

  it('leaves no trace in the destination when it rejects', async () => {
    await expectRejected(
      [
        { path: 'ok.txt', content: 'fine' },
        { path: '../x', content: 'bad' },
      ],
      'UnsafeArchive',
      /climbs/,
    );
    expect(await readdir(work)).to.deep.equal(['input.tar.gz']);
  });

  it('rejects devices and FIFOs', async () => {
    await expectRejected([{ path: 'null', type: 'chardev' }], 'UnsafeArchive', /CharacterDevice is not allowed/);
    await expectRejected([{ path: 'pipe', type: 'fifo' }], 'UnsafeArchive', /FIFO is not allowed/);
  });

  it('rejects a 10,000-entry archive', async () => {
    const many = function* () {
      for (let i = 0; i < 10_000; i++) yield { path: `f/${i}.txt`, content: 'x' } satisfies ForgedEntry;
    };
    await expectRejected(many, 'UnsafeArchive', /more than 5000 entries/);
  });

  it('rejects 1 GB of zeros that compresses to a few MB, before writing it', async () => {
    const archive = join(work, 'input.tar.gz');
    await forgeTarGz(archive, [{ path: 'zeros.bin', content: { zeros: 1024 ** 3 } }]);
    expect((await stat(archive)).size).to.be.below(8 * 1024 * 1024);
    const err = await unpackArchive(archive, join(work, 'site'), LIMITS).catch((e: unknown) => e);
    expect((err as PagewrightError).code).to.equal('ArtifactTooLarge');
    expect((err as PagewrightError).message).to.match(/more than 536870912 bytes/);
    const written = await stat(join(work, 'site', 'zeros.bin')).then(
      (s) => s.size,
      () => 0,
    );
    expect(written).to.equal(0);
  });

  it('reports a truncated or non-tar file as ArtifactCorrupt', async () => {
    const archive = join(work, 'input.tar.gz');
    await writeFile(archive, 'this is not a tarball');
    const err = await unpackArchive(archive, join(work, 'site'), LIMITS).catch((e: unknown) => e);
    expect((err as PagewrightError).code).to.equal('ArtifactCorrupt');
  });

  it('strips setuid bits and extracts safe links', async () => {
    const archive = join(work, 'input.tar.gz');
    await forgeTarGz(archive, [
      { path: 'bin/', type: 'dir' },
      { path: 'bin/tool', content: '#!/bin/sh\n', mode: 0o4755 },
      { path: 'latest', type: 'symlink', linkpath: 'bin/tool' },
      { path: 'same', type: 'hardlink', linkpath: 'bin/tool' },
    ]);
    const stats = await unpackArchive(archive, join(work, 'site'), LIMITS);
    expect(stats.entries).to.equal(4);
    expect((await stat(join(work, 'site', 'bin/tool'))).mode & 0o7000).to.equal(0);
    expect(await readlink(join(work, 'site', 'latest'))).to.equal('bin/tool');
    expect((await stat(join(work, 'site', 'same'))).nlink).to.equal(2);
  });
});

describe('packArchive', () => {
  it('packs exactly the listed entries and reports the archive sha256', async () => {
    const root = await mkdtemp(join(tmpdir(), 'pw-pack-'));
    try {
      const site = join(root, 'site');
      await mkdir(join(site, 'css'), { recursive: true });
      await writeFile(join(site, 'index.html'), '<h1>hi</h1>');
      await writeFile(join(site, 'css/site.css'), 'body{}');
      await symlink('index.html', join(site, 'home.html'));
      const out = join(root, 'out.tar.gz');
      const packed = await packArchive(site, ['css', 'css/site.css', 'home.html', 'index.html'], out);
      const { createHash } = await import('node:crypto');
      expect(packed.sha256).to.equal(
        createHash('sha256')
          .update(await readFile(out))
          .digest('hex'),
      );
      const names: string[] = [];
      await list({ file: out, onReadEntry: (e) => void names.push(`${e.type}:${e.path}`) });
      expect(names).to.deep.equal(['Directory:css/', 'File:css/site.css', 'SymbolicLink:home.html', 'File:index.html']);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('file modes through unpack and pack', function () {
  this.timeout(30_000);
  let root: string;
  beforeEach(async () => (root = await mkdtemp(join(tmpdir(), 'pw-modes-'))));
  afterEach(async () => rm(root, { recursive: true, force: true }));

  async function headers(archive: string) {
    const out = new Map<string, { mode: number; uid?: number; gid?: number; uname?: string; atime?: Date; ctime?: Date }>();
    await list({
      file: archive,
      onReadEntry: (e) =>
        void out.set(e.path.replace(/\/$/, ''), {
          mode: (e.mode ?? 0) & 0o7777,
          uid: e.uid,
          gid: e.gid,
          uname: e.uname,
          atime: e.atime,
          ctime: e.ctime,
        }),
    });
    return out;
  }

  // pins the node-tar behaviour packArchive works around (archive.ts pinMode): portable alone
  // clamps modes to (mode | 0o600) & ~0o022; onWriteEntry with a non-portable entry and a stat
  // of mode, size and mtime writes the mode exactly, and still no owner, atime or ctime
  it('packs modes exactly, 0664, 0444, 0600 and a 0750 directory, with no owner, atime or ctime, long paths (pax) included', async () => {
    const site = join(root, 'site');
    const long = `${'n'.repeat(120)}.html`;
    await mkdir(join(site, 'private'), { recursive: true });
    const files: Array<[string, number]> = [
      ['group.html', 0o664],
      ['readonly.html', 0o444],
      ['private/secret.txt', 0o600],
      [`private/${long}`, 0o640],
    ];
    for (const [path, mode] of files) {
      await writeFile(join(site, path), path);
      await chmod(join(site, path), mode);
    }
    await chmod(join(site, 'private'), 0o750);
    const out = join(root, 'out.tar.gz');
    await packArchive(site, ['group.html', 'private', 'private/secret.txt', `private/${long}`, 'readonly.html'], out);
    const h = await headers(out);
    for (const [path, mode] of [...files, ['private', 0o750] as [string, number]]) {
      expect(h.get(path)?.mode.toString(8), path).to.equal(mode.toString(8));
      expect(h.get(path), path).to.include({ uid: undefined, gid: undefined, atime: undefined, ctime: undefined });
      expect(h.get(path)?.uname ?? '', path).to.equal('');
    }
    const raw = (await promisify(gunzip)(await readFile(out))).toString('latin1');
    for (const key of ['atime=', 'ctime=', 'dev=', 'ino=', 'nlink=', 'uid=', 'gid=']) expect(raw, key).not.to.contain(key);
    // the content still comes through whole
    await mkdir(join(root, 'x'));
    await unpackArchive(out, join(root, 'x'), LIMITS);
    expect(await readFile(join(root, 'x', 'private', long), 'utf8')).to.equal(`private/${long}`);
  });

  it('packs the modes modeOf gives, special bits never', async () => {
    const site = join(root, 'site');
    await mkdir(site);
    await writeFile(join(site, 'a.html'), 'a');
    await writeFile(join(site, 'b.sh'), 'b');
    const out = join(root, 'out.tar.gz');
    await packArchive(site, ['a.html', 'b.sh'], out, (path) => (path === 'a.html' ? 0o4640 : undefined));
    const h = await headers(out);
    expect(h.get('a.html')?.mode.toString(8)).to.equal('640');
    expect(h.get('b.sh')?.mode.toString(8)).to.equal(((await stat(join(site, 'b.sh'))).mode & 0o777).toString(8));
  });

  it('records the archive modes at unpack, and with shareWithGroup makes files g+rw and directories g+rwx setgid as it writes them', async () => {
    const archive = join(root, 'input.tar.gz');
    await forgeTarGz(archive, [
      { path: 'docs/', type: 'dir', mode: 0o755 },
      { path: 'docs/a.html', content: 'a', mode: 0o644 },
      { path: 'docs/deep/', type: 'dir', mode: 0o700 },
      { path: 'docs/deep/b.txt', content: 'b', mode: 0o400 },
      { path: 'run.sh', content: '#!/bin/sh\n', mode: 0o4755 },
    ]);
    const plain = await unpackArchive(archive, join(root, 'plain'), LIMITS);
    expect(Object.fromEntries([...plain.modes].map(([p, m]) => [p, m.toString(8)]))).to.deep.equal({
      docs: '755',
      'docs/a.html': '644',
      'docs/deep': '700',
      'docs/deep/b.txt': '400',
      'run.sh': '755',
    });
    const umask = process.umask(0o022);
    try {
      const shared = await unpackArchive(archive, join(root, 'shared'), LIMITS, { shareWithGroup: true });
      expect(shared.modes).to.deep.equal(plain.modes);
      const modeOf = async (p: string) => ((await stat(join(root, 'shared', p))).mode & 0o7777).toString(8);
      expect(await modeOf('.')).to.match(/^27[0-7]5$/);
      expect(await modeOf('docs')).to.equal('2775');
      expect(await modeOf('docs/deep')).to.equal('2770');
      expect(await modeOf('docs/a.html')).to.equal('664');
      expect(await modeOf('docs/deep/b.txt')).to.equal('460');
      expect(await modeOf('run.sh')).to.equal('775');
      // the umask is the process's again
      expect(process.umask(0o022)).to.equal(0o022);
    } finally {
      process.umask(umask);
    }
  });
});
