/**
 * Which git URLs a site may name (manager/sites/git-remote.ts), decided before git sees them:
 * each way git knows to go somewhere other than an https server is its own case. The addresses
 * behind a host are url-policy.ts's (test/unit/webhook-url-policy.test.ts); the integration test
 * (test/integration/git-client.test.ts) shows the same refusals with the real git and server.
 */
import { expect } from 'chai';
import { checkGitUrl } from '../../manager/sites/git-remote.js';
import { checkRepoPath, quotePath } from '../../manager/sites/git-client.js';
import { UrlPolicy } from '../../manager/webhooks/url-policy.js';

const strict = new UrlPolicy({ allowHttp: false, allowedCidrs: [], settingPrefix: 'PAGEWRIGHT_SITE' });
const lenient = new UrlPolicy({ allowHttp: true, allowedCidrs: ['127.0.0.0/8'], settingPrefix: 'PAGEWRIGHT_SITE' });

function refused(url: string, policy = strict): { code: string; message: string } {
  const d = checkGitUrl(url, policy);
  expect(d.allowed, `${url} should be refused`).to.equal(false);
  if (d.allowed) throw new Error('unreachable');
  return { code: d.code, message: d.message };
}

describe('git remote URLs a site may name', () => {
  it('allows https URLs to a public host, and http only where PAGEWRIGHT_SITE_ALLOW_HTTP is set', () => {
    const d = checkGitUrl('https://git.example.com/team/site.git', strict);
    expect(d.allowed).to.equal(true);
    if (d.allowed) expect(d.host).to.equal('git.example.com');
    expect(refused('http://git.example.com/site.git')).to.deep.include({ code: 'TransportNotAllowed' });
    expect(refused('http://git.example.com/site.git').message).to.include('PAGEWRIGHT_SITE_ALLOW_HTTP');
    expect(checkGitUrl('http://127.0.0.1:9418/site.git', lenient).allowed).to.equal(true);
  });

  it("refuses git's other transports: file, local paths, ext:: and other helpers, git://, ftp", () => {
    for (const url of ['file:///var/run/secrets/kubernetes.io/serviceaccount', '/etc', './repo', 'repo.git', '../x']) {
      expect(refused(url).code, url).to.equal('TransportNotAllowed');
    }
    expect(refused('ext::sh -c touch% /tmp/pwned').code).to.equal('InvalidUrl'); // the space alone refuses it
    for (const url of ['ext::sh', 'fd::3', 'transport::https://x', 'persistent-https::x']) {
      expect(refused(url).code, url).to.equal('TransportNotAllowed');
    }
    for (const url of ['git://example.com/x.git', 'ftp://example.com/x.git', 'ftps://example.com/x']) {
      expect(refused(url).code, url).to.equal('TransportNotAllowed');
    }
  });

  it('names ssh (scp-like and ssh://) as not supported yet, not as a bad address', () => {
    for (const url of ['git@github.com:org/site.git', 'github.com:org/site', 'ssh://git@example.com/x.git', 'git+ssh://example.com/x']) {
      expect(refused(url).code, url).to.equal('TransportNotSupported');
    }
  });

  it('refuses credentials in the URL, option-like and control-character URLs, and queries', () => {
    expect(refused('https://user:token@example.com/x.git').code).to.equal('UserinfoNotAllowed');
    expect(refused('https://token@example.com/x.git').code).to.equal('UserinfoNotAllowed');
    expect(refused('--upload-pack=touch /tmp/x').code).to.equal('InvalidUrl');
    expect(refused('-oProxyCommand=x:y').code).to.equal('InvalidUrl');
    expect(refused('https://example.com/x.git\n[core]').code).to.equal('InvalidUrl');
    expect(refused('https://example.com/x.git?service=git-receive-pack').code).to.equal('InvalidUrl');
    expect(refused(`https://example.com/${'a'.repeat(2100)}`).code).to.equal('InvalidUrl');
  });

  it('refuses loopback, link-local, metadata and private literals, naming the setting that allows them', () => {
    for (const url of ['https://127.0.0.1/x', 'https://[::1]/x', 'https://169.254.169.254/x', 'https://10.0.0.5/x', 'https://0x7f.1/x']) {
      expect(refused(url).code, url).to.equal('AddressNotAllowed');
    }
    expect(refused('https://127.0.0.1/x').message).to.include('PAGEWRIGHT_SITE_ALLOWED_CIDRS');
    // the metadata service stays refused whatever is allowed
    expect(refused('http://169.254.169.254/x', new UrlPolicy({ allowHttp: true, allowedCidrs: ['0.0.0.0/0'] })).code).to.equal(
      'AddressNotAllowed',
    );
  });

  it('takes a repository path only as a plain relative directory', () => {
    expect(checkRepoPath(undefined)).to.equal(null);
    expect(checkRepoPath('/')).to.equal(null);
    expect(checkRepoPath('site/public/')).to.equal('site/public');
    for (const bad of ['../x', 'a/../../b', 'a//b', '.git', 'x/.GIT/hooks', 'a/./b']) {
      expect(() => checkRepoPath(bad), bad).to.throw(/plain relative directory/);
    }
  });

  it('quotes fast-import paths so no file name can be read as a command', () => {
    expect(quotePath('index.html')).to.equal('"index.html"');
    expect(quotePath('a "b"\\c')).to.equal('"a \\"b\\"\\\\c"');
    expect(quotePath('evil\nM 100644 inline x')).to.equal('"evil\\nM 100644 inline x"');
    expect(quotePath('tab\there')).to.equal('"tab\\011here"');
    expect(quotePath('café/é.html')).to.equal('"café/é.html"');
  });
});
