/**
 * What the caller may do, asked of the apiserver: a SubjectAccessReview for the user the front
 * proxy named (front-proxy.ts), on the custom resources themselves. So what a user may do
 * through the review API is what RBAC gives them on PagewrightSites and PagewrightJobs
 * (`get` a job to see its diff, review page and previews; `get` a site to pull or preview a
 * version; `update` a site to push a version or roll it back), whatever the path they came by.
 * The apiserver has already authorized the review API's own path (review.pagewright.dev); this
 * is the second check, on the objects, that an aggregated server owes (kubernetes #61349).
 *
 * Answers are cached for a few seconds per (user, groups, extra, attributes), as the
 * apiserver's own webhook authorizer caches, so a page with many preview files does not cost a
 * review per file; a refusal is cached for less.
 */
import type { AuthorizationV1Api } from '@kubernetes/client-node';
import { PagewrightError } from '../common/errors.js';
import type { Caller } from './front-proxy.js';

export interface ResourceAttributes {
  namespace: string;
  verb: 'get' | 'update';
  resource: 'pagewrightsites' | 'pagewrightjobs';
  name: string;
}

const ALLOWED_TTL_MS = 10_000;
const DENIED_TTL_MS = 2_000;
const MAX_ENTRIES = 10_000;

export class AccessReviewer {
  readonly #cache = new Map<string, { allowed: boolean; reason: string; until: number }>();

  constructor(
    private readonly api: AuthorizationV1Api,
    private readonly now: () => number = Date.now,
  ) {}

  /** Throws 403 Forbidden naming what was refused, unless RBAC allows it. */
  async require(caller: Caller, attrs: ResourceAttributes): Promise<void> {
    const { allowed, reason } = await this.review(caller, attrs);
    if (!allowed) {
      throw new PagewrightError(
        'Forbidden',
        `${caller.user} may not ${attrs.verb} ${attrs.resource}.pagewright.dev ${attrs.name} in namespace ${attrs.namespace}${reason ? `: ${reason}` : ''}`,
      );
    }
  }

  async review(caller: Caller, attrs: ResourceAttributes): Promise<{ allowed: boolean; reason: string }> {
    const key = JSON.stringify([caller.user, [...caller.groups].sort(), caller.extra, attrs]);
    const hit = this.#cache.get(key);
    if (hit && hit.until > this.now()) return hit;
    const answer = await this.api.createSubjectAccessReview({
      body: {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: caller.user,
          groups: caller.groups,
          extra: caller.extra,
          resourceAttributes: { group: 'pagewright.dev', ...attrs },
        },
      },
    });
    const allowed = answer.status?.allowed === true && answer.status?.denied !== true;
    const entry = { allowed, reason: answer.status?.reason ?? '', until: this.now() + (allowed ? ALLOWED_TTL_MS : DENIED_TTL_MS) };
    if (this.#cache.size >= MAX_ENTRIES) this.#cache.clear();
    this.#cache.set(key, entry);
    return entry;
  }
}
