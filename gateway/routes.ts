/**
 * The gateway's whole route table, matched on the decoded path, before anything else happens.
 * Pure: the route and its validated parameters, or why nothing matched (then a 404, and nothing
 * reaches the upstream).
 *
 * Why it is not Express routing on the request's URL: Express matches the raw path, so
 * `/v1/models/..\files` matched `/v1/models/:id`, and the upstream URL, built from the request's
 * URL, became `/v1/files` once the URL parser turned `\` into `/` and resolved `..` (the issue's
 * path-traversal finding). Here:
 *   - the request target must be origin-form (`/…`): an absolute-form target
 *     (`GET http://host/v1/models`) or an asterisk matches nothing;
 *   - no query string and no fragment (no route takes one);
 *   - every segment is percent-decoded once and must then be a plain name: no `/`, `\`, `%`
 *     (double encoding), control or non-ASCII characters, and not empty, `.` or `..`;
 *   - the match is exact and case-sensitive (`/V1/RESPONSES` and `/v1/responses/` match nothing);
 *   - a model id must look like a model id (MODEL_ID).
 * The upstream URL is then built from the matched route alone (upstreamPath), never from the
 * request's URL.
 */

export type Route = { name: 'responses' } | { name: 'models' } | { name: 'model'; id: string };
export type RouteMatch = { route: Route } | { route: null; why: string };

/**
 * What a model id may be: OpenAI's ids (`gpt-5.5`, `o4-mini-2025-04-16`, fine-tunes such as
 * `ft:gpt-4o-mini:org:name:id`) and other OpenAI-compatible endpoints' (`org/model` is not
 * accepted: a slash would be a path segment upstream).
 */
const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

const SEGMENT = /^[A-Za-z0-9._:-]+$/;

export function matchRoute(method: string | undefined, target: string | undefined): RouteMatch {
  if (!target?.startsWith('/') || target.startsWith('//')) return { route: null, why: 'the request target is not a path' };
  if (target.includes('?') || target.includes('#')) return { route: null, why: 'no route takes a query string' };
  const segments: string[] = [];
  for (const raw of target.slice(1).split('/')) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return { route: null, why: 'the path is not valid percent-encoding' };
    }
    if (!SEGMENT.test(segment) || segment === '.' || segment === '..') return { route: null, why: 'the path has a segment no route has' };
    segments.push(segment);
  }
  const [v1, resource, id, ...rest] = segments;
  if (v1 !== 'v1' || rest.length > 0) return { route: null, why: 'no such route' };
  if (resource === 'responses' && id === undefined)
    return method === 'POST' ? { route: { name: 'responses' } } : { route: null, why: 'responses takes POST only' };
  if (resource === 'models') {
    if (method !== 'GET') return { route: null, why: 'models takes GET only' };
    if (id === undefined) return { route: { name: 'models' } };
    if (MODEL_ID.test(id)) return { route: { name: 'model', id } };
    return { route: null, why: 'not a model id' };
  }
  return { route: null, why: 'no such route' };
}

/** The path under the upstream's base URL (`…/v1`) for a route: built from the route, never from the request. */
export function upstreamPath(route: Route): string {
  switch (route.name) {
    case 'responses':
      return '/responses';
    case 'models':
      return '/models';
    case 'model':
      return `/models/${encodeURIComponent(route.id)}`;
  }
}
