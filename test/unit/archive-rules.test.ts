import { expect } from 'chai';
import { ArchiveRules, type EntryHeader, describeViolation, normalizeEntryPath, specialBitsViolation } from '../../common/archive-rules.js';

const LIMITS = { maxEntries: 100, maxBytes: 1000 };

function firstViolation(entries: EntryHeader[], opts: { specialBits: 'refuse' | 'allow' } = { specialBits: 'refuse' }, limits = LIMITS) {
  const rules = new ArchiveRules(limits, opts);
  for (const e of entries) {
    const v = rules.check(e);
    if (v) return v;
  }
  return null;
}

describe('ArchiveRules', () => {
  it('accepts a site: files, directories, links that point down, a hard link to an earlier file', () => {
    expect(
      firstViolation([
        { path: './', type: 'Directory', mode: 0o2775 }, // a setgid directory (fsGroup volumes) is fine
        { path: 'index.html', type: 'File', mode: 0o644, size: 10 },
        { path: 'css/', type: 'Directory', mode: 0o755 },
        { path: 'css/site.css', type: 'File', mode: 0o644, size: 10 },
        { path: 'home.html', type: 'SymbolicLink', linkpath: 'index.html' },
        { path: 'copy.html', type: 'Link', linkpath: './index.html' },
      ]),
    ).to.equal(null);
  });

  it('refuses a hard link to a path that is not an earlier file of the archive', () => {
    const later = firstViolation([
      { path: 'copy.html', type: 'Link', linkpath: 'index.html' },
      { path: 'index.html', type: 'File', size: 1 },
    ]);
    expect(later).to.include({ rule: 'LinkEscapes', path: 'copy.html' });
    expect(later?.why).to.match(/not a file earlier in the archive/);
    const toDir = firstViolation([
      { path: 'd/', type: 'Directory' },
      { path: 'h', type: 'Link', linkpath: 'd' },
    ]);
    expect(toDir?.rule).to.equal('LinkEscapes');
  });

  it('refuses setuid/setgid files in outputs, and leaves them to the caller on unpack', () => {
    const entries: EntryHeader[] = [{ path: 'bin/x', type: 'File', mode: 0o4755, size: 1 }];
    expect(firstViolation(entries)).to.deep.equal({ rule: 'SpecialBits', path: 'bin/x', why: 'setuid bit (mode 4755)' });
    expect(firstViolation(entries, { specialBits: 'allow' })).to.equal(null);
    expect(specialBitsViolation('File', 0o6755)).to.equal('setuid and setgid bits (mode 6755)');
    expect(specialBitsViolation('File', 0o1755)).to.equal(null);
    expect(specialBitsViolation('Directory', 0o2775)).to.equal(null);
  });

  it('counts entries and file bytes (a hard link adds no bytes) and names the entry that went over', () => {
    const many = Array.from({ length: 5 }, (_, i): EntryHeader => ({ path: `f${i}`, type: 'File', size: 1 }));
    expect(firstViolation(many, undefined, { maxEntries: 4, maxBytes: 1000 })).to.deep.equal({
      rule: 'TooManyEntries',
      path: 'f4',
      why: 'more than 4 entries',
    });
    const bytes = firstViolation(
      [
        { path: 'a', type: 'File', size: 600 },
        { path: 'b', type: 'Link', linkpath: 'a', size: 0 },
        { path: 'c', type: 'File', size: 600 },
      ],
      undefined,
      LIMITS,
    );
    expect(bytes).to.deep.equal({ rule: 'TooManyBytes', path: 'c', why: 'more than 1000 bytes' });
  });

  it('describes a violation with the quoted path', () => {
    expect(describeViolation({ rule: 'LinkEscapes', path: 'etc-link', why: 'symlink to absolute path /etc leaves the site' })).to.equal(
      '"etc-link": symlink to absolute path /etc leaves the site',
    );
    expect(describeViolation({ rule: 'TooManyEntries', path: 'a/b/c', why: 'more than 5000 entries' })).to.equal(
      'more than 5000 entries (at "a/b/c")',
    );
    expect(describeViolation({ rule: 'UnsafePath', path: 'x\ny', why: 'w' })).to.equal('"x\\ny": w');
  });

  it('normalises entry paths', () => {
    expect(normalizeEntryPath('./a//b/')).to.equal('a/b');
    expect(normalizeEntryPath('./')).to.equal('.');
    expect(normalizeEntryPath('a\\b')).to.equal('a/b');
  });
});
