import { spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { chmod, link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { PagewrightError } from '../../common/errors.js';
import { packDirectory, unpackArchive } from '../../runner/archive.js';
import { checkOutputTree } from '../../runner/output-check.js';
import { checkStoredOutput } from '../../storage/output-check.js';

const LIMITS = { maxEntries: 5000, maxBytes: 512 * 1024 * 1024 };

describe('checkOutputTree', () => {
  let root: string;
  let site: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'pw-output-check-'));
    site = join(root, 'site');
    await mkdir(join(site, 'css'), { recursive: true });
    await writeFile(join(site, 'index.html'), '<h1>hi</h1>');
    await writeFile(join(site, 'css', 'site.css'), 'body{}');
  });
  afterEach(async () => rm(root, { recursive: true, force: true }));

  async function refusal(limits = LIMITS, opts = {}): Promise<string> {
    const err = await checkOutputTree(site, limits, opts).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err, 'the tree was accepted').to.be.instanceOf(PagewrightError);
    expect((err as PagewrightError).code).to.equal('UnsafeOutput');
    return (err as PagewrightError).message;
  }

  it('passes a clean tree, and what it passes, unpack and storage accept', async () => {
    await symlink('index.html', join(site, 'home.html'));
    await symlink('site.css', join(site, 'css', 'latest.css'));
    await link(join(site, 'index.html'), join(site, 'copy.html'));
    await chmod(join(site, 'css'), 0o2775); // what fsGroup volumes give every directory
    const stats = await checkOutputTree(site, LIMITS);
    // css, css/latest.css, css/site.css, copy.html, home.html, index.html; the hard link's bytes once
    expect(stats).to.deep.equal({ entries: 6, bytes: 17 });
    const archive = join(root, 'out.tar.gz');
    await packDirectory(site, archive);
    await checkStoredOutput(createReadStream(archive), LIMITS);
    expect(await unpackArchive(archive, join(root, 'again'), LIMITS)).to.include({ entries: 6, bytes: 17 });
  });

  it('refuses a symlink to /etc', async () => {
    await symlink('/etc', join(site, 'etc-link'));
    expect(await refusal()).to.equal('unsafe output: "etc-link": symlink to absolute path /etc leaves the site');
  });

  it('refuses a symlink to ../outside, even one that stays inside after resolution', async () => {
    await symlink('../outside', join(site, 'up'));
    expect(await refusal()).to.match(/"up": symlink target \.\.\/outside climbs with "\.\."/);
    await rm(join(site, 'up'));
    // a later unpack refuses any "..": so must this
    await symlink('../index.html', join(site, 'css', 'home.html'));
    expect(await refusal()).to.match(/"css\/home.html": symlink target \.\.\/index.html climbs/);
  });

  it('refuses a setuid or setgid file', async () => {
    await mkdir(join(site, 'bin'));
    await writeFile(join(site, 'bin', 'x'), '#!/bin/sh\n');
    await chmod(join(site, 'bin', 'x'), 0o4755);
    expect(await refusal()).to.equal('unsafe output: "bin/x": setuid bit (mode 4755)');
    await chmod(join(site, 'bin', 'x'), 0o2755);
    expect(await refusal()).to.equal('unsafe output: "bin/x": setgid bit (mode 2755)');
  });

  it('refuses a FIFO', async () => {
    expect(spawnSync('mkfifo', [join(site, 'pipe')]).status).to.equal(0);
    expect(await refusal()).to.equal('unsafe output: "pipe": entry type FIFO is not allowed (only files, directories and links)');
  });

  it('refuses too many entries, naming the first one over the limit', async () => {
    for (let i = 0; i < 10; i++) await writeFile(join(site, `p${i}.html`), 'x');
    // depth first, sorted: css, css/site.css, index.html, p0.html, p1.html, p2.html...
    expect(await refusal({ maxEntries: 5, maxBytes: 1e9 })).to.equal('unsafe output: more than 5 entries (at "p2.html")');
  });

  it('refuses too many bytes, naming the file that went over', async () => {
    await writeFile(join(site, 'big.bin'), Buffer.alloc(2000));
    expect(await refusal({ maxEntries: 100, maxBytes: 1000 })).to.equal('unsafe output: more than 1000 bytes (at "big.bin")');
  });

  it('refuses a file nobody can read (mode 000), even when root checks', async () => {
    await writeFile(join(site, 'x'), 'secret');
    await chmod(join(site, 'x'), 0o000);
    expect(await refusal()).to.equal('unsafe output: "x": unreadable file (mode 000)');
  });

  it('refuses a hard link to a file outside the site, and the site directory replaced by a link', async () => {
    await writeFile(join(root, 'outside'), 'not the site');
    await link(join(root, 'outside'), join(site, 'inside'));
    expect(await refusal()).to.match(/^unsafe output: "inside": hard link to a file outside the site \(2 names, 1 inside\)$/);
    await rm(join(site, 'inside'));
    await rm(site, { recursive: true });
    await symlink('/etc', site);
    expect(await refusal()).to.match(/the site directory .* is not a directory/);
  });

  it('refuses a file name that is not UTF-8', async () => {
    await writeFile(Buffer.concat([Buffer.from(`${site}/bad-`), Buffer.from([0xff, 0xfe])]), 'x');
    expect(await refusal()).to.match(/^unsafe output: "bad-\uFFFD\uFFFD": file name is not valid UTF-8$/);
  });

  it('names the first offending path in sorted order, whatever the order they were made in', async () => {
    expect(spawnSync('mkfifo', [join(site, 'z-pipe')]).status).to.equal(0);
    await mkdir(join(site, 'b'));
    await symlink('/etc', join(site, 'b', 'etc'));
    await symlink('/', join(site, 'a-root'));
    expect(await refusal()).to.match(/^unsafe output: "a-root": /);
    await rm(join(site, 'a-root'));
    expect(await refusal()).to.match(/^unsafe output: "b\/etc": /);
  });

  it('leaves excluded paths out', async () => {
    await mkdir(join(site, '.codex'));
    expect(spawnSync('mkfifo', [join(site, '.codex', 'pipe')]).status).to.equal(0);
    await checkOutputTree(site, LIMITS, { exclude: (p) => p === '.codex' || p.startsWith('.codex/') });
    expect(await refusal()).to.match(/"\.codex\/pipe": entry type FIFO/);
  });
});
