/**
 * A site's path rules and change limits (runner/path-rules.ts), decided on a diff without a
 * runner: deny wins over allow, deletions count, dot paths are matched, the first offending path
 * is named; and the glob grammar the schema (and the CRD's CEL) accepts. The real node test
 * (test/node/manager.test.ts) shows a job through the real Codex CLI ending PathNotAllowed.
 */
import { expect } from 'chai';
import { PATH_GLOB_PATTERN, PathRules, type FileChange } from '../../common/schemas.js';
import { runnerPathRules } from '../../common/site-resource.js';
import { checkPathRules, rulesForInstructions } from '../../runner/path-rules.js';

const rules = (r: Partial<PathRules>) => PathRules.parse(r);
const changes = (...c: Array<[string, FileChange['change']]>): FileChange[] => c.map(([path, change]) => ({ path, change }));
const size = () => 100;

describe('path rules and change limits', () => {
  it('lets any path change without rules, and only allowed ones with allow', () => {
    expect(checkPathRules(changes(['index.html', 'modified']), size, rules({}))).to.equal(null);
    const allow = rules({ allow: ['blog/**', '*.css'] });
    expect(checkPathRules(changes(['blog/2026/post.html', 'added'], ['site.css', 'modified']), size, allow)).to.equal(null);
    expect(checkPathRules(changes(['blog/a.html', 'added'], ['index.html', 'modified']), size, allow)).to.deep.equal({
      code: 'PathNotAllowed',
      message: `"index.html" (modified) is outside the site's allow rules (blog/**, *.css)`,
    });
  });

  it('refuses a denied path whatever allow says, deletions and dot paths included', () => {
    const r = rules({ allow: ['**'], deny: ['admin/**', '.well-known/**', 'robots.txt'] });
    expect(checkPathRules(changes(['admin/users.html', 'modified']), size, r)?.code).to.equal('PathNotAllowed');
    expect(checkPathRules(changes(['robots.txt', 'deleted']), size, r)?.message).to.match(
      /"robots.txt" \(deleted\) matches the site's deny rules/,
    );
    expect(checkPathRules(changes(['.well-known/security.txt', 'added']), size, r)?.code).to.equal('PathNotAllowed');
    expect(checkPathRules(changes(['administrator.html', 'added']), size, r)).to.equal(null);
  });

  it('names the first file past the limits: files changed, and bytes written (deletions write none)', () => {
    const many = changes(['a.html', 'added'], ['b.html', 'added'], ['c.html', 'deleted']);
    expect(checkPathRules(many, size, rules({ max_files: 3 }))).to.equal(null);
    expect(checkPathRules(many, size, rules({ max_files: 2 }))).to.deep.equal({
      code: 'ChangeTooLarge',
      message: `3 files changed, more than the site's limit of 2 (at "c.html")`,
    });
    expect(checkPathRules(many, size, rules({ max_bytes: 200 }))).to.equal(null);
    expect(checkPathRules(many, size, rules({ max_bytes: 150 }))?.message).to.match(
      /more than the site's limit of 150 bytes \(at "b.html"\)/,
    );
  });

  it('accepts globs of *, **, ?, {a,b} and path characters, and refuses what does not parse or climbs', () => {
    for (const ok of ['**', 'blog/**/*.html', 'img/*.{png,jpg}', '?.txt', '.well-known/**', 'a b/c-d_e+f@g=h,i~j'])
      expect(PATH_GLOB_PATTERN.test(ok), ok).to.equal(true);
    for (const bad of ['', '/etc/**', '../x', 'a/../b', '!negated', '[abc].html', 'a{b', 'a{b{c}}', 'x\\y', 'tab\there'])
      expect(PATH_GLOB_PATTERN.test(bad), bad).to.equal(false);
  });

  it('tells the agent the rules in its instructions, and says nothing without them', () => {
    expect(rulesForInstructions(undefined)).to.equal('');
    expect(rulesForInstructions(rules({}))).to.equal('');
    const text = rulesForInstructions(runnerPathRules({ deny: ['admin/**'], maxFilesChanged: 5 }));
    expect(text).to.include("## This site's path rules").and.include('`admin/**`').and.include('at most 5 files');
  });
});
