/**
 * Where a webhook may make the manager connect: a pure decision on a URL and on each address its
 * host resolves to. A PagewrightSite's webhook is a URL of the user's choosing that the manager
 * POSTs to from inside the cluster, so it is a server-side request forgery seam: whoever may edit
 * a site could otherwise make the manager talk to the cloud's metadata service (credentials),
 * the kubelet, etcd or any Service of the cluster. delivery.ts asks this module about the URL,
 * then about every address DNS gives for its host, and connects only to addresses it allowed.
 *
 * The URL: `https:` only (`http:` where PAGEWRIGHT_WEBHOOK_ALLOW_HTTP is set; never `file:`,
 * `ftp:`, `data:`, `gopher:`, `ws:` ...), no userinfo (a password in a URL ends up in logs and in
 * the status), any port. An IP literal host is checked here at once; a name is checked after
 * resolution (the only check that means anything: names resolve through the manager pod's
 * search path, `/etc/hosts` and whatever DNS the user controls).
 *
 * An address, in this order:
 *   1. never, whatever the config says: the unspecified addresses (`0.0.0.0/8`, `::`: a connect
 *      to them reaches this host), the cloud metadata services (`169.254.169.254`, AWS IMDS over
 *      IPv6 `fd00:ec2::254`, ECS task metadata `169.254.170.2`, Alibaba `100.100.100.200`: they
 *      hand out the node's cloud credentials and no webhook receiver lives there), multicast,
 *      `240.0.0.0/4` (reserved, and the broadcast address);
 *   2. allowed if PAGEWRIGHT_WEBHOOK_ALLOWED_CIDRS contains it (an operator's own receivers:
 *      in-cluster Services, a VPC host, `127.0.0.0/8` in tests);
 *   3. refused if in the ranges: loopback (`127.0.0.0/8`, `::1`), link-local
 *      (`169.254.0.0/16`, `fe80::/10`), the cluster's Service and pod ranges
 *      (PAGEWRIGHT_CLUSTER_SERVICE_CIDRS / _POD_CIDRS, both stacks of a dual-stack cluster);
 *   4. refused by decision, beyond the issue: the private ranges (RFC 1918, shared address space
 *      `100.64.0.0/10`, unique-local `fc00::/7`, NAT64 local-use `64:ff9b:1::/48`, site-local
 *      `fec0::/10`). The manager's network position is inside the cluster's network, and the node
 *      network, the VPC's other hosts, internal load balancers and the API server's endpoint are
 *      in those ranges but in neither cluster CIDR; and the cluster CIDRs are optional config, so
 *      without them this still catches the usual defaults (`10.96.0.0/12`, `10.244.0.0/16`). The
 *      gateway's NetworkPolicy draws the same line ("HTTPS outside private ranges"). Receivers
 *      inside are named with ALLOWED_CIDRS. Also the special-purpose ranges that are no receiver
 *      on the internet (RFC 6890: `192.0.0.0/24`, the documentation ranges, benchmarking
 *      `198.18.0.0/15`, `100::/64` discard, `2001:db8::/32`, Teredo `2001::/32` whose embedded
 *      IPv4 address is obfuscated, the deprecated IPv4-compatible `::/96`).
 * IPv6 forms that carry an IPv4 address are judged as that address: IPv4-mapped `::ffff:a.b.c.d`
 * (node's BlockList does this itself), NAT64 `64:ff9b::a.b.c.d` (DNS64 synthesises these for
 * every IPv4-only host in an IPv6-only cluster, so they cannot simply be refused) and 6to4
 * `2002:AABB:CCDD::/48`: each IPv4 rule (refusals and allowances alike) is mirrored into those
 * two prefixes.
 *
 * Parsing and matching are node's own (`net.isIP`, `net.BlockList`, WHATWG `URL`, which also
 * normalises `0x7f.1`, `2130706433` and `0177.0.0.1` to `127.0.0.1`), not a hand-written parser;
 * only the `a.b.c.d/n` split of a CIDR is done here. No npm IP library was needed: ipaddr.js in
 * node_modules is express's 1.x line, and ip-address is a socks transitive.
 */
import net from 'node:net';

/** The cluster's side of the decision (manager/webhooks/config.ts reads it from the environment). */
export interface NetworkPolicyConfig {
  /** `http:` URLs too (in-cluster receivers without TLS); default: https only. */
  allowHttp: boolean;
  /** Addresses allowed even in a refused range (not the never-ranges). */
  allowedCidrs: readonly string[];
  /** The cluster's Service ranges (both families on a dual-stack cluster). */
  serviceCidrs?: readonly string[];
  /** The cluster's pod ranges. */
  podCidrs?: readonly string[];
  /** The settings' prefix that refusals name (what to set to allow it); default PAGEWRIGHT_WEBHOOK. */
  settingPrefix?: string;
}

/** Why an address is refused: a stable name, for logs, the site's status and tests. */
export type AddressRange =
  | 'unspecified'
  | 'metadata'
  | 'multicast'
  | 'reserved'
  | 'loopback'
  | 'linkLocal'
  | 'serviceCidr'
  | 'podCidr'
  | 'private'
  | 'specialPurpose';

/** Stable codes of a refused URL or address. */
type UrlRefusalCode = 'InvalidUrl' | 'SchemeNotAllowed' | 'UserinfoNotAllowed' | 'AddressNotAllowed';

export type AddressDecision = { allowed: true } | { allowed: false; code: 'AddressNotAllowed'; range: AddressRange; message: string };

export type UrlDecision =
  | {
      allowed: true;
      url: URL;
      /** The host to resolve, or the literal address (brackets removed). */
      host: string;
      /** Set when the host is an IP literal: no resolution, this is the address. */
      literal?: { address: string; family: 4 | 6 };
    }
  | { allowed: false; code: UrlRefusalCode; range?: AddressRange; message: string };

export class InvalidCidrError extends Error {
  constructor(readonly cidr: string) {
    super(`not a CIDR (a.b.c.d/n or x:y::/n): ${JSON.stringify(cidr)}`);
    this.name = 'InvalidCidrError';
  }
}

interface Cidr {
  address: string;
  prefix: number;
  family: 4 | 6;
}

/** `a.b.c.d/n`, `x::/n`, or a bare address (a single host). Throws InvalidCidrError. */
export function parseCidr(text: string): Cidr {
  const s = text.trim();
  const slash = s.indexOf('/');
  const address = slash < 0 ? s : s.slice(0, slash);
  const family = net.isIP(address);
  if (family !== 4 && family !== 6) throw new InvalidCidrError(text);
  const max = family === 4 ? 32 : 128;
  const prefixText = slash < 0 ? String(max) : s.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(prefixText) || Number(prefixText) > max || address.includes('%')) throw new InvalidCidrError(text);
  return { address, prefix: Number(prefixText), family };
}

/** The IPv6 prefixes whose addresses carry an IPv4 address in fixed bits (IPv4-mapped: BlockList's own). */
function embeddings(c: Cidr): Cidr[] {
  if (c.family !== 4) return [];
  const octets = c.address.split('.').map(Number);
  const hex = (a: number, b: number) => ((a << 8) | b).toString(16);
  return [
    { address: `64:ff9b::${c.address}`, prefix: 96 + c.prefix, family: 6 },
    { address: `2002:${hex(octets[0]!, octets[1]!)}:${hex(octets[2]!, octets[3]!)}::`, prefix: 16 + c.prefix, family: 6 },
  ];
}

function blockList(cidrs: readonly Cidr[]): net.BlockList {
  const list = new net.BlockList();
  for (const c of cidrs.flatMap((c) => [c, ...embeddings(c)])) list.addSubnet(c.address, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6');
  return list;
}

const NEVER: ReadonlyArray<readonly [AddressRange, readonly string[]]> = [
  ['unspecified', ['0.0.0.0/8', '::/128']],
  ['metadata', ['169.254.169.254/32', 'fd00:ec2::254/128', '169.254.170.2/32', '100.100.100.200/32']],
  ['multicast', ['224.0.0.0/4', 'ff00::/8']],
  ['reserved', ['240.0.0.0/4']],
];

const REFUSED: ReadonlyArray<readonly [AddressRange, readonly string[]]> = [
  ['loopback', ['127.0.0.0/8', '::1/128']],
  ['linkLocal', ['169.254.0.0/16', 'fe80::/10']],
  ['private', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7', '64:ff9b:1::/48', 'fec0::/10']],
  [
    'specialPurpose',
    [
      '192.0.0.0/24',
      '192.0.2.0/24',
      '198.18.0.0/15',
      '198.51.100.0/24',
      '203.0.113.0/24',
      '100::/64',
      '2001::/32',
      '2001:db8::/32',
      '::/96',
    ],
  ],
];

const RANGE_TEXT: Readonly<Record<AddressRange, string>> = {
  unspecified: 'the unspecified address (it reaches this host)',
  metadata: "a cloud metadata service (the node's credentials)",
  multicast: 'a multicast address',
  reserved: 'a reserved address',
  loopback: 'a loopback address',
  linkLocal: 'a link-local address',
  serviceCidr: "the cluster's Service range",
  podCidr: "the cluster's pod range",
  private: 'a private address',
  specialPurpose: 'a special-purpose address (no receiver on the internet)',
};

/**
 * The policy, compiled once from the config (bad CIDRs throw InvalidCidrError: config.ts
 * validates them at start-up with parseCidr, so this only throws on a programming error).
 */
export class UrlPolicy {
  readonly allowHttp: boolean;
  readonly #settings: string;
  readonly #never: ReadonlyArray<readonly [AddressRange, net.BlockList]>;
  readonly #refused: ReadonlyArray<readonly [AddressRange, net.BlockList]>;
  readonly #allowed: net.BlockList;

  constructor(config: NetworkPolicyConfig) {
    this.allowHttp = config.allowHttp;
    this.#settings = config.settingPrefix ?? 'PAGEWRIGHT_WEBHOOK';
    const compile = (ranges: ReadonlyArray<readonly [AddressRange, readonly string[]]>) =>
      ranges.filter(([, cidrs]) => cidrs.length > 0).map(([range, cidrs]) => [range, blockList(cidrs.map(parseCidr))] as const);
    this.#never = compile(NEVER);
    this.#refused = compile([
      ...REFUSED.slice(0, 2),
      ['serviceCidr', config.serviceCidrs ?? []],
      ['podCidr', config.podCidrs ?? []],
      ...REFUSED.slice(2),
    ]);
    this.#allowed = blockList(config.allowedCidrs.map(parseCidr));
  }

  /** May the manager connect to this IP address? (`address` as DNS or net gives it; a zone id is ignored.) */
  checkAddress(address: string): AddressDecision {
    const family = net.isIP(address);
    if (family === 0) return { allowed: false, code: 'AddressNotAllowed', range: 'reserved', message: `${address} is not an IP address` };
    const type = family === 4 ? 'ipv4' : 'ipv6';
    const refuse = (range: AddressRange, note = ''): AddressDecision => ({
      allowed: false,
      code: 'AddressNotAllowed',
      range,
      message: `${address} is ${RANGE_TEXT[range]}${note}`,
    });
    for (const [range, list] of this.#never) if (list.check(address, type)) return refuse(range);
    if (this.#allowed.check(address, type)) return { allowed: true };
    for (const [range, list] of this.#refused) {
      if (list.check(address, type)) return refuse(range, ` (${this.#settings}_ALLOWED_CIDRS can allow it)`);
    }
    return { allowed: true };
  }

  /** Is this a URL the manager may POST to? An IP-literal host is checked here; a name after it resolves. */
  checkUrl(raw: string): UrlDecision {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return { allowed: false, code: 'InvalidUrl', message: 'not an absolute URL' };
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && this.allowHttp)) {
      const allowed = this.allowHttp ? 'https: or http:' : `https: (http: only where ${this.#settings}_ALLOW_HTTP is set)`;
      return { allowed: false, code: 'SchemeNotAllowed', message: `scheme ${url.protocol} is not allowed: ${allowed}` };
    }
    if (url.username !== '' || url.password !== '') {
      return { allowed: false, code: 'UserinfoNotAllowed', message: 'a URL with a user name or password is not allowed' };
    }
    if (url.hostname === '') return { allowed: false, code: 'InvalidUrl', message: 'the URL has no host' };
    url.hash = '';
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const family = net.isIP(host);
    if (family === 4 || family === 6) {
      const decision = this.checkAddress(host);
      if (!decision.allowed) return { allowed: false, code: decision.code, range: decision.range, message: decision.message };
      return { allowed: true, url, host, literal: { address: host, family } };
    }
    return { allowed: true, url, host };
  }
}
