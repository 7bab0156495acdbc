import { mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
