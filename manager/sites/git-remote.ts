/**
 * Which git URLs a PagewrightSite may name (spec.source.git.url, a publish target's url): a pure
 * decision. A git URL is a way to make the manager reach a place of the user's choosing, and git
 * itself knows many ways to go: `file://` and plain paths (the manager's own disk: its service
 * account token), `ext::` (runs a command), `fd::`, `git://` (plain text, no auth), and the
 * scp-like `host:path` form whose host may start with `-` (an ssh option). So the URL is
 * decided here, before git sees it, and git is then told the same (git-client.ts sets
 * GIT_ALLOW_PROTOCOL and pins the address it may connect to).
 *
 * Allowed: `https:` (and `http:` where PAGEWRIGHT_SITE_ALLOW_HTTP is set), through url-policy.ts:
 * no user name or password in the URL (credentials come only from the site's named Secret), and
 * the host's addresses judged like a webhook's (no loopback, link-local, metadata, private or
 * cluster addresses unless PAGEWRIGHT_SITE_ALLOWED_CIDRS allows them). ssh is on the issue's
 * allowlist but not built yet (README "Sites from git"): it is refused with its own code, so a
 * user knows it is the transport, not the address.
 */
import type { UrlDecision, UrlPolicy } from '../webhooks/url-policy.js';

type GitUrlRefusal =
  | { code: 'TransportNotAllowed' | 'TransportNotSupported' | 'InvalidUrl'; message: string }
  | { code: Exclude<Extract<UrlDecision, { allowed: false }>['code'], 'InvalidUrl'>; message: string };

export type GitUrlDecision = ({ allowed: true } & Extract<UrlDecision, { allowed: true }>) | ({ allowed: false } & GitUrlRefusal);

/** `ext::cmd`, `fd::3`, `transport::address`: git's remote-helper syntax. */
const HELPER_SYNTAX = /^[A-Za-z][A-Za-z0-9+.-]*::/;
export function checkGitUrl(raw: string, policy: UrlPolicy): GitUrlDecision {
  const refuse = (code: GitUrlRefusal['code'], message: string): GitUrlDecision => ({ allowed: false, code, message }) as GitUrlDecision;
  if (raw.length > 2048) return refuse('InvalidUrl', 'a git URL may be at most 2048 characters');
  // a NUL, a newline or a space is never in a real remote, and git's config or curl could read it as something else
  if (/[\0-\x20\x7f]/.test(raw)) return refuse('InvalidUrl', 'a git URL may not hold spaces or control characters');
  if (raw.startsWith('-')) return refuse('InvalidUrl', 'a git URL may not start with "-"');
  // git's own order (transport.c, connect.c): `x::` first, then `://` is a URL, then `host:path`
  // with the colon before any slash is ssh, and anything else is a local path
  if (HELPER_SYNTAX.test(raw)) {
    return refuse('TransportNotAllowed', `the "${raw.slice(0, raw.indexOf('::'))}::" transport is not allowed: https URLs only`);
  }
  if (!raw.includes('://')) {
    const colon = raw.indexOf(':');
    const slash = raw.indexOf('/');
    if (colon > 0 && (slash < 0 || colon < slash)) {
      return refuse('TransportNotSupported', 'ssh remotes (host:path) are not supported yet: use an https URL');
    }
    return refuse('TransportNotAllowed', 'a local path is not allowed: https URLs only');
  }
  let scheme: string;
  try {
    scheme = new URL(raw).protocol;
  } catch {
    return refuse('InvalidUrl', 'not a valid URL');
  }
  if (scheme === 'ssh:' || scheme === 'git+ssh:' || scheme === 'ssh+git:') {
    return refuse('TransportNotSupported', 'ssh remotes are not supported yet: use an https URL');
  }
  if (scheme !== 'https:' && scheme !== 'http:') {
    return refuse('TransportNotAllowed', `the ${scheme} transport is not allowed: https URLs only`);
  }
  const decided = policy.checkUrl(raw);
  if (!decided.allowed) return decided.code === 'SchemeNotAllowed' ? { ...decided, code: 'TransportNotAllowed' } : decided;
  if (decided.url.search !== '') return refuse('InvalidUrl', 'a git URL may not have a query');
  return decided;
}
