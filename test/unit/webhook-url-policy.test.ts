/**
 * The webhook URL policy (manager/webhooks/url-policy.ts): each refusal class is its own case,
 * with the allowed cases and the PAGEWRIGHT_WEBHOOK_ALLOWED_CIDRS overrides beside them.
 * delivery.ts applies the same checkAddress to every resolved address: the integration test
 * (test/integration/webhook-delivery.test.ts) shows it on real connections.
 */
import { expect } from 'chai';
import { loadConfig } from '../../common/config.js';
import { loadWebhookSettings, webhookConfigSpec } from '../../manager/webhooks/config.js';
import { type AddressRange, type NetworkPolicyConfig, UrlPolicy, parseCidr } from '../../manager/webhooks/url-policy.js';

const CLUSTER: NetworkPolicyConfig = {
  allowHttp: false,
  allowedCidrs: [],
  // deliberately outside the private ranges, so these cases show the cluster ranges do the refusing
  serviceCidrs: ['11.96.0.0/12', '2600:1f00:96::/112'],
  podCidrs: ['11.244.0.0/16'],
};
const policy = (over: Partial<NetworkPolicyConfig> = {}) => new UrlPolicy({ ...CLUSTER, ...over });

function refusedAs(p: UrlPolicy, url: string): { code: string; range?: AddressRange } {
  const d = p.checkUrl(url);
  expect(d.allowed, `${url} should be refused`).to.equal(false);
  if (d.allowed) throw new Error('unreachable');
  return { code: d.code, ...(d.range ? { range: d.range } : {}) };
}

function allowed(p: UrlPolicy, url: string): void {
  const d = p.checkUrl(url);
  expect(d.allowed, `${url}: ${d.allowed ? '' : d.message}`).to.equal(true);
}

describe('webhook URL policy', () => {
  describe('schemes', () => {
    for (const url of [
      'file:///etc/passwd',
      'ftp://example.com/x',
      'gopher://example.com:70/_x',
      'data:text/plain,hello',
      'ws://example.com/',
      'wss://example.com/',
      'javascript:alert(1)',
      'dict://example.com:11211/',
    ]) {
      it(`refuses ${url.split(':')[0]}:`, () => {
        expect(refusedAs(policy(), url).code).to.equal('SchemeNotAllowed');
      });
    }

    it('refuses http: unless PAGEWRIGHT_WEBHOOK_ALLOW_HTTP is set', () => {
      expect(refusedAs(policy(), 'http://example.com/hook').code).to.equal('SchemeNotAllowed');
      allowed(policy({ allowHttp: true }), 'http://example.com/hook');
      expect(refusedAs(policy({ allowHttp: true }), 'ftp://example.com/').code).to.equal('SchemeNotAllowed');
    });

    it('allows https: on any port', () => {
      allowed(policy(), 'https://hooks.example.com/pagewright');
      allowed(policy(), 'https://hooks.example.com:8443/x?token=1');
    });

    it('refuses what is not an absolute URL', () => {
      for (const url of ['', 'hooks.example.com/x', '/hook', 'https://', 'https://exa mple.com/']) {
        expect(refusedAs(policy(), url).code, url).to.equal('InvalidUrl');
      }
    });
  });

  it('refuses userinfo in any form', () => {
    for (const url of ['https://user@example.com/', 'https://user:pw@example.com/', 'https://:pw@example.com/']) {
      expect(refusedAs(policy(), url).code, url).to.equal('UserinfoNotAllowed');
    }
  });

  it('leaves a host name to the check after resolution, and drops the fragment', () => {
    const d = policy().checkUrl('https://hooks.example.com/x#frag');
    expect(d.allowed && d.host).to.equal('hooks.example.com');
    expect(d.allowed && d.literal).to.equal(undefined);
    expect(d.allowed && d.url.href).to.equal('https://hooks.example.com/x');
  });

  // every IP-literal class: the URL check refuses it at once, and checkAddress (what delivery
  // applies to resolved addresses) names the same range
  const REFUSED: Array<[string, string, AddressRange]> = [
    ['IPv4 loopback', '127.0.0.1', 'loopback'],
    ['the rest of 127/8', '127.200.3.4', 'loopback'],
    ['IPv6 loopback', '::1', 'loopback'],
    ['IPv4-mapped loopback (dotted)', '::ffff:127.0.0.1', 'loopback'],
    ['IPv4-mapped loopback (hex)', '::ffff:7f00:1', 'loopback'],
    ['NAT64 of loopback', '64:ff9b::7f00:1', 'loopback'],
    ['6to4 of loopback', '2002:7f00:1::1', 'loopback'],
    ['0.0.0.0', '0.0.0.0', 'unspecified'],
    ['the rest of 0/8', '0.1.2.3', 'unspecified'],
    ['::', '::', 'unspecified'],
    ['IPv4-mapped 0.0.0.0', '::ffff:0.0.0.0', 'unspecified'],
    ['the metadata service', '169.254.169.254', 'metadata'],
    ['the metadata service, IPv4-mapped', '::ffff:169.254.169.254', 'metadata'],
    ['the metadata service through NAT64', '64:ff9b::a9fe:a9fe', 'metadata'],
    ['AWS IMDS over IPv6', 'fd00:ec2::254', 'metadata'],
    ['ECS task metadata', '169.254.170.2', 'metadata'],
    ['IPv4 link-local', '169.254.10.20', 'linkLocal'],
    ['IPv6 link-local', 'fe80::1', 'linkLocal'],
    ['IPv6 link-local, top of fe80::/10', 'febf::1', 'linkLocal'],
    ["the cluster's Service range", '11.96.0.1', 'serviceCidr'],
    ["the cluster's Service range, IPv6", '2600:1f00:96::10', 'serviceCidr'],
    ["the cluster's Service range, IPv4-mapped", '::ffff:11.96.0.10', 'serviceCidr'],
    ["the cluster's pod range", '11.244.7.8', 'podCidr'],
    ['10/8', '10.1.2.3', 'private'],
    ['172.16/12', '172.31.255.1', 'private'],
    ['192.168/16', '192.168.1.1', 'private'],
    ['shared address space 100.64/10', '100.64.0.1', 'private'],
    ['unique-local fc00::/7', 'fd12:3456::1', 'private'],
    ['unique-local fc00::/8 half', 'fc00::1', 'private'],
    ['6to4 of a private address', '2002:a00:1::1', 'private'],
    ['IPv4 multicast', '224.0.0.251', 'multicast'],
    ['IPv6 multicast', 'ff02::1', 'multicast'],
    ['broadcast', '255.255.255.255', 'reserved'],
    ['240/4', '240.0.0.1', 'reserved'],
    ['documentation 192.0.2/24', '192.0.2.10', 'specialPurpose'],
    ['documentation 2001:db8::/32', '2001:db8::1', 'specialPurpose'],
    ['benchmarking 198.18/15', '198.19.0.1', 'specialPurpose'],
    ['Teredo', '2001:0:4136:e378::1', 'specialPurpose'],
    ['IPv4-compatible (deprecated)', '::7f00:1', 'specialPurpose'],
  ];
  describe('addresses', () => {
    for (const [what, address, range] of REFUSED) {
      it(`refuses ${what} (${address})`, () => {
        const host = address.includes(':') ? `[${address}]` : address;
        expect(refusedAs(policy(), `https://${host}:8443/hook`)).to.deep.equal({ code: 'AddressNotAllowed', range });
        const d = policy().checkAddress(address);
        expect(d.allowed ? 'allowed' : d.range).to.equal(range);
      });
    }

    it('refuses an IPv6 link-local address with a zone id, as resolvers give it', () => {
      const d = policy().checkAddress('fe80::1%eth0');
      expect(d.allowed ? 'allowed' : d.range).to.equal('linkLocal');
    });

    it('refuses the other spellings of 127.0.0.1 that URL parsing normalises', () => {
      for (const host of ['0x7f.1', '2130706433', '0177.0.0.1', '127.1']) {
        expect(refusedAs(policy(), `https://${host}/`), host).to.deep.equal({ code: 'AddressNotAllowed', range: 'loopback' });
      }
    });

    it('refuses what is not an address', () => {
      expect(policy().checkAddress('example.com').allowed).to.equal(false);
    });

    it('allows public addresses, in every form', () => {
      for (const address of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1']) {
        expect(policy().checkAddress(address).allowed, address).to.equal(true);
      }
      allowed(policy(), 'https://8.8.8.8/hook');
      allowed(policy(), 'https://[2606:4700:4700::1111]:8443/hook');
      const d = policy().checkUrl('https://[2606:4700:4700::1111]/');
      expect(d.allowed && d.literal).to.deep.equal({ address: '2606:4700:4700::1111', family: 6 });
    });

    it('refuses nothing but the fixed ranges when no cluster ranges are configured', () => {
      const bare = new UrlPolicy({ allowHttp: false, allowedCidrs: [] });
      expect(bare.checkAddress('11.96.0.1').allowed).to.equal(true);
      // the usual cluster defaults are private anyway
      for (const a of ['10.96.0.1', '10.244.0.5']) {
        const d = bare.checkAddress(a);
        expect(d.allowed ? 'allowed' : d.range, a).to.equal('private');
      }
    });
  });

  describe('PAGEWRIGHT_WEBHOOK_ALLOWED_CIDRS', () => {
    it('allows loopback in all its forms when 127.0.0.0/8 is allowed, and only those', () => {
      const p = policy({ allowedCidrs: ['127.0.0.0/8'] });
      for (const a of ['127.0.0.1', '127.9.9.9', '::ffff:127.0.0.1', '64:ff9b::7f00:1'])
        expect(p.checkAddress(a).allowed, a).to.equal(true);
      allowed(p, 'https://127.0.0.1:8443/');
      const v6 = p.checkAddress('::1');
      expect(v6.allowed ? 'allowed' : v6.range).to.equal('loopback');
      expect(policy({ allowedCidrs: ['::1'] }).checkAddress('::1').allowed).to.equal(true);
    });

    it("allows the cluster's ranges and private ranges it names, and nothing next to them", () => {
      const p = policy({ allowedCidrs: ['11.96.0.10/32', '10.20.0.0/16', 'fd12::/16'] });
      expect(p.checkAddress('11.96.0.10').allowed).to.equal(true);
      expect(p.checkAddress('11.96.0.11').allowed).to.equal(false);
      expect(p.checkAddress('10.20.3.4').allowed).to.equal(true);
      expect(p.checkAddress('10.21.3.4').allowed).to.equal(false);
      expect(p.checkAddress('fd12:1::1').allowed).to.equal(true);
    });

    it('never allows the metadata services, the unspecified addresses or multicast, even under 0.0.0.0/0 and ::/0', () => {
      const p = policy({ allowedCidrs: ['0.0.0.0/0', '::/0', '169.254.0.0/16', 'fd00::/8'] });
      for (const [a, range] of [
        ['169.254.169.254', 'metadata'],
        ['fd00:ec2::254', 'metadata'],
        ['::ffff:169.254.169.254', 'metadata'],
        ['0.0.0.0', 'unspecified'],
        ['::', 'unspecified'],
        ['224.0.0.1', 'multicast'],
      ] as const) {
        const d = p.checkAddress(a);
        expect(d.allowed ? 'allowed' : d.range, a).to.equal(range);
      }
      // the rest of link-local is the operator's to allow
      expect(p.checkAddress('169.254.10.20').allowed).to.equal(true);
      expect(p.checkAddress('127.0.0.1').allowed).to.equal(true);
    });
  });

  it('parses CIDRs and single addresses, and refuses anything else', () => {
    expect(parseCidr('10.0.0.0/8')).to.deep.equal({ address: '10.0.0.0', prefix: 8, family: 4 });
    expect(parseCidr(' fd00::/8 ')).to.deep.equal({ address: 'fd00::', prefix: 8, family: 6 });
    expect(parseCidr('192.0.2.7')).to.deep.equal({ address: '192.0.2.7', prefix: 32, family: 4 });
    for (const bad of [
      '10.0.0.0/33',
      '::/129',
      '10.0.0/8',
      'example.com/8',
      '10.0.0.0/-1',
      '10.0.0.0/8/8',
      'fe80::1%eth0/64',
      '10.0.0.0/',
    ]) {
      expect(() => parseCidr(bad), bad).to.throw(/not a CIDR/);
    }
  });

  describe('config', () => {
    it('reads the PAGEWRIGHT_WEBHOOK_* and CLUSTER_* variables, with defaults', () => {
      const c = loadConfig(webhookConfigSpec, {});
      expect(c).to.deep.include({
        webhookAllowHttp: false,
        webhookAllowedCidrs: [],
        webhookTimeoutSeconds: 15,
        webhookMaxAttempts: 10,
        webhookBackoffBaseSeconds: 10,
        clusterServiceCidrs: [],
        clusterPodCidrs: [],
      });
      const set = loadConfig(webhookConfigSpec, {
        PAGEWRIGHT_WEBHOOK_ALLOW_HTTP: 'true',
        PAGEWRIGHT_WEBHOOK_ALLOWED_CIDRS: '127.0.0.0/8, ::1',
        PAGEWRIGHT_CLUSTER_SERVICE_CIDRS: '10.96.0.0/12,fd00:10:96::/112',
        PAGEWRIGHT_WEBHOOK_TIMEOUT_SECONDS: '2.5',
      });
      const s = loadWebhookSettings(set);
      expect(s.network).to.deep.equal({
        allowHttp: true,
        allowedCidrs: ['127.0.0.0/8', '::1'],
        serviceCidrs: ['10.96.0.0/12', 'fd00:10:96::/112'],
        podCidrs: [],
      });
      expect(s.timeoutMs).to.equal(2500);
      expect(s.retry).to.deep.equal({ maxAttempts: 10, baseBackoffMs: 10_000 });
    });

    it('names each bad variable', () => {
      expect(() =>
        loadConfig(webhookConfigSpec, {
          PAGEWRIGHT_WEBHOOK_ALLOWED_CIDRS: '10.0.0.0/8,10.0.0.0/99',
          PAGEWRIGHT_CLUSTER_POD_CIDRS: 'pods',
          PAGEWRIGHT_WEBHOOK_MAX_ATTEMPTS: '0',
        }),
      )
        .to.throw(/PAGEWRIGHT_WEBHOOK_ALLOWED_CIDRS: not a CIDR.*10\.0\.0\.0\/99/)
        .and.to.match(/PAGEWRIGHT_CLUSTER_POD_CIDRS/)
        .and.to.match(/PAGEWRIGHT_WEBHOOK_MAX_ATTEMPTS/);
    });

    it('refuses a CA file that holds no certificate', () => {
      const c = loadConfig(webhookConfigSpec, { PAGEWRIGHT_WEBHOOK_CA_FILE: '/etc/ca.pem' });
      expect(() => loadWebhookSettings(c, () => 'not a pem')).to.throw(
        /PAGEWRIGHT_WEBHOOK_CA_FILE: \/etc\/ca.pem holds no PEM certificate/,
      );
      expect(() =>
        loadWebhookSettings(c, () => {
          throw new Error('ENOENT');
        }),
      ).to.throw(/PAGEWRIGHT_WEBHOOK_CA_FILE: cannot read/);
      expect(loadWebhookSettings(c, () => '-----BEGIN CERTIFICATE-----\n...').extraCa).to.have.length(1);
    });
  });
});
