/**
 * The CLI's pure parts (cli/command.ts, format.ts, diff-color.ts, preview-proxy.ts, approve.ts,
 * kube-context.ts, review-commands.ts): argument parsing and exit-code classes, kubectl's tables
 * and ages, git's diff colours and when they apply, the preview proxy's Host check, routes and
 * header rules, and what a job's status says of its approval. No network.
 */
import { expect } from 'chai';
import { PagewrightJob } from '../../common/job-resource.js';
import { PagewrightSite } from '../../common/site-resource.js';
import { approvalState, notApprovable } from '../../cli/approve.js';
import { CliError, UsageError, durationMs, outputFormat, parseCommand, statusMessage } from '../../cli/command.js';
import { colorDiff, colorMode, shouldColor } from '../../cli/diff-color.js';
import { changedBy, historyTable, humanAge, resolveVersion, sitesTable, table } from '../../cli/format.js';
import { resolveNamespace } from '../../cli/kube-context.js';
import { forwardedRequestHeaders, forwardedResponseHeaders, hostAllowed, previewRoute, previewUrl } from '../../cli/preview-proxy.js';
import { parseSiteRef } from '../../cli/review-commands.js';

const V1 = 'a'.repeat(64);
const V2 = `b${'1'.repeat(63)}`;
const V3 = `b${'2'.repeat(63)}`;
const ROOT = '/apis/review.pagewright.dev/v1alpha1/namespaces/team';

function site(status: Record<string, unknown>, name = 'bakery', created = '2026-01-01T00:00:00Z'): PagewrightSite {
  return PagewrightSite.parse({
    metadata: { name, namespace: 'team', uid: 'u', resourceVersion: '1', creationTimestamp: created },
    status,
  });
}

function job(status: Record<string, unknown>, generation = 2): PagewrightJob {
  return PagewrightJob.parse({
    metadata: { name: 'j', namespace: 'team', uid: 'u', resourceVersion: '1', generation },
    spec: { siteId: 'bakery', prompt: 'p' },
    status,
  });
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('did not throw');
}

describe('CLI arguments and errors (cli/command.ts)', () => {
  it('takes the common flags on every verb, short and long, and counts operands', () => {
    const p = parseCommand(
      ['-n', 'team', 'bakery', '--context', 'prod', '--kubeconfig', '/k', '--to', V1],
      { to: { type: 'string' } },
      {
        min: 1,
        max: 1,
        names: 'NAME',
      },
    );
    expect(p.kube).to.deep.equal({ namespace: 'team', context: 'prod', kubeconfig: '/k' });
    expect(p.positionals).to.deep.equal(['bakery']);
    expect(p.values.to).to.equal(V1);
    expect(parseCommand(['--help'], {}, { min: 2, max: 2, names: 'NAME DIR' }).help, '--help needs no operands').to.equal(true);
  });

  it('an unknown flag, a missing or extra operand, an empty namespace and a bad -o are usage errors (exit 2)', () => {
    const spec = { min: 1, max: 1, names: 'NAME' };
    expect(thrown(() => parseCommand(['--bogus', 'x'], {}, spec))).to.be.instanceOf(UsageError);
    expect(thrown(() => parseCommand([], {}, spec)).message).to.equal('expected NAME');
    expect(thrown(() => parseCommand(['a', 'b'], {}, spec)).message).to.equal('unexpected argument "b"');
    expect(thrown(() => parseCommand(['a', '-n', ''], {}, spec))).to.be.instanceOf(UsageError);
    expect(outputFormat(undefined)).to.equal('table');
    expect(outputFormat('json')).to.equal('json');
    expect(thrown(() => outputFormat('yaml'))).to.be.instanceOf(UsageError);
    expect([durationMs('timeout', '90'), durationMs('timeout', '2m'), durationMs('timeout', '1h')]).to.deep.equal([
      90_000, 120_000, 3_600_000,
    ]);
    expect(thrown(() => durationMs('timeout', 'soon'))).to.be.instanceOf(UsageError);
  });

  it('shows a Status by its message, on one line; other bodies by their first line and the HTTP status', () => {
    const forbidden = JSON.stringify({
      kind: 'Status',
      status: 'Failure',
      reason: 'Forbidden',
      message: 'sites.review.pagewright.dev "cafe" is forbidden: User "eve" cannot get resource "sites/versions"',
    });
    expect(statusMessage(403, forbidden)).to.equal(
      'sites.review.pagewright.dev "cafe" is forbidden: User "eve" cannot get resource "sites/versions"',
    );
    expect(statusMessage(422, JSON.stringify({ kind: 'Status', message: 'UnsafeArchive: a\nb' }))).to.equal('UnsafeArchive: a b');
    expect(statusMessage(502, '<html>bad gateway</html>\nmore')).to.equal('<html>bad gateway</html> (HTTP 502)');
    expect(statusMessage(500, '')).to.equal('the server answered HTTP 500');
    expect(new CliError('x')).to.be.instanceOf(Error);
  });

  it('the namespace: -n, else the context, else default', () => {
    expect(resolveNamespace('a', 'b')).to.equal('a');
    expect(resolveNamespace(undefined, 'b')).to.equal('b');
    expect(resolveNamespace(undefined, undefined)).to.equal('default');
  });
});

describe('CLI output (cli/format.ts)', () => {
  it('writes ages as kubectl does', () => {
    const s = 1000;
    expect(humanAge(5 * s)).to.equal('5s');
    expect(humanAge(119 * s)).to.equal('119s');
    expect(humanAge(150 * s)).to.equal('2m30s');
    expect(humanAge(180 * s)).to.equal('3m');
    expect(humanAge(600 * s)).to.equal('10m');
    expect(humanAge(3 * 3600 * s + 60 * s)).to.equal('3h1m');
    expect(humanAge(47 * 3600 * s)).to.equal('47h');
    expect(humanAge(50 * 3600 * s)).to.equal('2d2h');
    expect(humanAge(30 * 86400 * s)).to.equal('30d');
    expect(humanAge(-500)).to.equal('0s');
  });

  it('lists sites like kubectl get pws, sorted, a site without versions shown as <none>', () => {
    const now = new Date('2026-01-01T00:05:00Z');
    const out = sitesTable(
      [site({}, 'zeta'), site({ currentVersion: V1, publishedBy: 'holiday-hours', versions: 3 }, 'bakery', '2025-12-31T00:00:00Z')],
      now,
    );
    expect(out.split('\n')).to.deep.equal([
      'NAME     CURRENT        PUBLISHED-BY    VERSIONS   AGE',
      `bakery   ${V1.slice(0, 12)}   holiday-hours   3          24h`,
      'zeta     <none>         <none>          0          5m',
    ]);
    expect(
      table([
        ['A', 'B'],
        ['long', ''],
      ]),
    ).to.equal('A      B\nlong');
  });

  it('lists a site history newest first with who made each change, the current version marked once', () => {
    const s = site({
      currentVersion: V1,
      history: [
        { sequence: 3, action: 'rolledback', version: V1, time: '2026-01-03T00:00:00Z', user: 'alice' },
        { sequence: 2, action: 'published', version: V2, time: '2026-01-02T00:00:00Z', job: 'holiday-hours' },
        { sequence: 1, action: 'pushed', version: V1, time: '2026-01-01T00:00:00Z', user: 'alice' },
      ],
    });
    const lines = historyTable(s).split('\n');
    expect(lines[0]).to.match(/^SEQ\s+VERSION\s+ACTION\s+BY\s+TIME$/);
    expect(lines[1]).to.match(/^3\s+aaaaaaaaaaaa\s+rolledback\s+alice\s+2026-01-03T00:00:00Z\s+\(current\)$/);
    expect(lines[2]).to.match(/^2\s+b11111111111\s+published\s+holiday-hours\s+2026-01-02T00:00:00Z$/);
    expect(lines[3]).to.not.contain('(current)');
    expect(changedBy({ sequence: 1, action: 'pushed', version: V1, time: '' })).to.equal('<unknown>');
  });

  it('resolves a version prefix against the history: unique, unknown or ambiguous', () => {
    const s = site({
      currentVersion: V1,
      history: [
        { sequence: 2, action: 'pushed', version: V2, time: 't' },
        { sequence: 1, action: 'pushed', version: V3, time: 't' },
      ],
    });
    expect(resolveVersion(V1, null, { allowCurrent: false })).to.equal(V1);
    expect(resolveVersion('aaaa', s, { allowCurrent: false })).to.equal(V1);
    expect(resolveVersion('b111', s, { allowCurrent: false })).to.equal(V2);
    expect(resolveVersion('current', s, { allowCurrent: true })).to.equal('current');
    expect(thrown(() => resolveVersion('b', s, { allowCurrent: false })).message).to.match(/not a version/);
    expect(thrown(() => resolveVersion('bbbb', s, { allowCurrent: false })).message).to.match(/no version starting with bbbb/);
    expect(thrown(() => resolveVersion('b1', s, { allowCurrent: false })).message).to.match(/not a version/);
    const amb = site({
      history: [
        { sequence: 2, action: 'pushed', version: V2, time: 't' },
        { sequence: 1, action: 'pushed', version: `b1111${'3'.repeat(59)}`, time: 't' },
      ],
    });
    expect(thrown(() => resolveVersion('b111', amb, { allowCurrent: false })).message).to.match(/ambiguous/);
    expect(thrown(() => resolveVersion('current', s, { allowCurrent: false }))).to.be.instanceOf(CliError);
  });
});

describe('pagewright diff colours (cli/diff-color.ts)', () => {
  const patch = [
    'diff --git a/index.html b/index.html',
    'index 1111111..2222222 100644',
    '--- a/index.html',
    '+++ b/index.html',
    '@@ -1,3 +1,3 @@ <body>',
    ' <h1>x</h1>',
    '--- a removed line that looks like a header',
    '+++ an added one',
    ' end',
    '\\ No newline at end of file',
    '--- a/plain.txt',
    '+++ b/plain.txt',
    '@@ -1 +1 @@',
    '-old',
    '+new',
    '',
  ].join('\n');

  it('paints as git does: meta bold, hunk headers cyan, removals red, additions green, by the hunk counts', () => {
    const lines = colorDiff(patch).split('\n');
    expect(lines[0]).to.equal('\x1b[1mdiff --git a/index.html b/index.html\x1b[m');
    expect(lines[2]).to.equal('\x1b[1m--- a/index.html\x1b[m');
    expect(lines[4]).to.equal('\x1b[36m@@ -1,3 +1,3 @@\x1b[m <body>');
    expect(lines[5]).to.equal(' <h1>x</h1>');
    expect(lines[6]).to.equal('\x1b[31m--- a removed line that looks like a header\x1b[m');
    expect(lines[7]).to.equal('\x1b[32m+++ an added one\x1b[m');
    expect(lines[9]).to.equal('\\ No newline at end of file');
    expect(lines[10], 'after the hunk: a header again').to.equal('\x1b[1m--- a/plain.txt\x1b[m');
    expect(lines[13]).to.equal('\x1b[31m-old\x1b[m');
    expect(lines[14]).to.equal('\x1b[32m+new\x1b[m');
    expect(colorDiff(patch).replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), ''), 'only colour is added').to.equal(patch);
  });

  it('colours on a terminal unless NO_COLOR or TERM=dumb; always and never win', () => {
    expect(shouldColor('auto', true, {})).to.equal(true);
    expect(shouldColor('auto', false, {})).to.equal(false);
    expect(shouldColor('auto', true, { NO_COLOR: '1' })).to.equal(false);
    expect(shouldColor('auto', true, { NO_COLOR: '' }), 'an empty NO_COLOR is unset').to.equal(true);
    expect(shouldColor('auto', true, { TERM: 'dumb' })).to.equal(false);
    expect(shouldColor('always', false, { NO_COLOR: '1' })).to.equal(true);
    expect(shouldColor('never', true, {})).to.equal(false);
    expect([colorMode(undefined), colorMode('never')]).to.deep.equal(['auto', 'never']);
    expect(thrown(() => colorMode('sometimes'))).to.be.instanceOf(UsageError);
  });
});

describe('pagewright preview local proxy rules (cli/preview-proxy.ts)', () => {
  it('answers only to its own Host: 127.0.0.1 or localhost on its port (DNS rebinding)', () => {
    expect(hostAllowed('127.0.0.1:8123', 8123)).to.equal(true);
    expect(hostAllowed('LOCALHOST:8123', 8123)).to.equal(true);
    expect(hostAllowed('evil.example:8123', 8123)).to.equal(false);
    expect(hostAllowed('127.0.0.1:8124', 8123)).to.equal(false);
    expect(hostAllowed('127.0.0.1', 8123)).to.equal(false);
    expect(hostAllowed(undefined, 8123)).to.equal(false);
  });

  it("forwards a job's review, output, base and diff, and nothing else of the apiserver", () => {
    const t = { kind: 'job', job: 'hours' } as const;
    expect(previewRoute(t, 'team', '/')).to.deep.equal({ kind: 'redirect', location: '/review' });
    expect(previewRoute(t, 'team', '/review')).to.deep.equal({ kind: 'forward', path: `${ROOT}/jobs/hours/review` });
    expect(previewRoute(t, 'team', '/review/style.css')).to.deep.equal({ kind: 'forward', path: `${ROOT}/jobs/hours/review/style.css` });
    expect(previewRoute(t, 'team', '/output/a b.html?x=1')).to.deep.equal({
      kind: 'forward',
      path: `${ROOT}/jobs/hours/output/a%20b.html?x=1`,
    });
    expect(previewRoute(t, 'team', '/diff')).to.deep.equal({ kind: 'forward', path: `${ROOT}/jobs/hours/diff` });
    for (const bad of [
      '/link',
      '/../other/review',
      '/output/../../../../../api/v1/secrets',
      '/output/%2e%2e/%2e%2e/link',
      '/output/..%2f..%2flink',
      '//evil.example/x',
      '/output\\..\\link',
    ])
      expect(previewRoute(t, 'team', bad), bad).to.deep.equal({ kind: 'notFound' });
    expect(previewUrl(t, 8123)).to.equal('http://127.0.0.1:8123/review');
  });

  it("forwards a site version's files under files/ only", () => {
    const t = { kind: 'site', site: 'bakery', version: 'current' } as const;
    expect(previewRoute(t, 'team', '/')).to.deep.equal({ kind: 'forward', path: `${ROOT}/sites/bakery/versions/current/files/` });
    expect(previewRoute(t, 'team', '/css/../menu.html')).to.deep.equal({
      kind: 'forward',
      path: `${ROOT}/sites/bakery/versions/current/files/menu.html`,
    });
    expect(previewRoute(t, 'team', '/../../x')).to.deep.equal({ kind: 'forward', path: `${ROOT}/sites/bakery/versions/current/files/x` });
    expect(previewUrl(t, 9)).to.equal('http://127.0.0.1:9/');
    expect(parseSiteRef('bakery@abcd')).to.deep.equal({ site: 'bakery', version: 'abcd' });
    expect(parseSiteRef('bakery')).to.deep.equal({ site: 'bakery', version: 'current' });
    expect(thrown(() => parseSiteRef('bakery@'))).to.be.instanceOf(UsageError);
  });

  it("never forwards the browser's cookies or authorization; drops Set-Cookie and WWW-Authenticate, keeps the CSP", () => {
    expect(
      forwardedRequestHeaders({
        cookie: 'a=b',
        authorization: 'Bearer x',
        accept: 'text/html',
        'if-none-match': '"v"',
        'x-remote-user': 'admin',
        host: 'h',
      }),
    ).to.deep.equal({ accept: 'text/html', 'if-none-match': '"v"' });
    const prefix = `${ROOT}/jobs/hours/`;
    const out = forwardedResponseHeaders(
      {
        'content-security-policy': "sandbox allow-scripts; frame-ancestors 'self'",
        'set-cookie': ['a=b'],
        'www-authenticate': 'Basic',
        connection: 'keep-alive',
        'content-type': 'text/html',
        location: './about/',
      },
      prefix,
    );
    expect(out).to.deep.equal({
      'content-security-policy': "sandbox allow-scripts; frame-ancestors 'self'",
      'content-type': 'text/html',
      location: './about/',
    });
    expect(forwardedResponseHeaders({ location: `https://10.0.0.1:6443${prefix}output/about/` }, prefix).location).to.equal(
      '/output/about/',
    );
    expect(forwardedResponseHeaders({ location: 'https://evil.example/' }, prefix).location).to.equal(undefined);
    expect(forwardedResponseHeaders({ location: '/api/v1/secrets' }, prefix).location).to.equal(undefined);
  });
});

describe('pagewright approve (cli/approve.ts)', () => {
  it('waits for a Published condition written for the generation it made; reports a publish or a refusal', () => {
    expect(approvalState(job({ phase: 'Succeeded' }), 2)).to.deep.equal({ state: 'waiting' });
    const refusedBefore = { type: 'Published', status: 'False', reason: 'PublishConflict', message: 'm', observedGeneration: 1 };
    expect(approvalState(job({ phase: 'Succeeded', conditions: [refusedBefore] }), 2), 'an older refusal').to.deep.equal({
      state: 'waiting',
    });
    expect(approvalState(job({ phase: 'Succeeded', conditions: [{ ...refusedBefore, observedGeneration: 2 }] }), 2)).to.deep.equal({
      state: 'refused',
      reason: 'PublishConflict',
      message: 'm',
    });
    const published = { type: 'Published', status: 'True', reason: 'Published', observedGeneration: 2 };
    expect(approvalState(job({ phase: 'Succeeded', publishedVersion: V1, conditions: [published] }), 2)).to.deep.equal({
      state: 'published',
      version: V1,
    });
  });

  it('refuses a job that is not Succeeded, saying what it is', () => {
    expect(notApprovable(job({ phase: 'Succeeded' }))).to.equal(null);
    expect(notApprovable(job({ phase: 'Running' }))).to.equal('job j is Running, not Succeeded: only a Succeeded job can be approved');
    expect(notApprovable(job({ phase: 'Failed', reason: 'CodexFailed' }))).to.match(/is Failed \(CodexFailed\)/);
    expect(notApprovable(job({}))).to.match(/is Queued/);
  });
});
