/**
 * The review API's discovery documents, which the kube-apiserver's aggregation layer reads
 * from this server (its availability check and `kubectl api-resources` both do). The
 * resources are subresources of sites and jobs (no list of them is served): RBAC rules name
 * them as `sites/versions`, `jobs/diff`, ... in the group review.pagewright.dev.
 */
import { REVIEW_API_ROOT, REVIEW_GROUP, REVIEW_VERSION } from '../common/review-api.js';

export const GROUP = REVIEW_GROUP;
const VERSION = REVIEW_VERSION;
const GROUP_VERSION = `${GROUP}/${VERSION}`;
/** Where the API's namespaced paths start. */
export const API_ROOT = REVIEW_API_ROOT;

const resource = (name: string, kind: string, verbs: string[]) => ({ name, singularName: '', namespaced: true, kind, verbs });

export const API_RESOURCE_LIST = {
  kind: 'APIResourceList',
  apiVersion: 'v1',
  groupVersion: GROUP_VERSION,
  resources: [
    resource('sites', 'Site', []),
    // GET: download a version (tar.gz); POST: push a new one
    resource('sites/versions', 'SiteVersion', ['get', 'create']),
    resource('sites/rollback', 'SiteRollback', ['create']),
    resource('jobs', 'Job', []),
    resource('jobs/diff', 'JobDiff', ['get']),
    resource('jobs/review', 'JobReview', ['get']),
    resource('jobs/output', 'JobOutput', ['get']),
    resource('jobs/base', 'JobBase', ['get']),
    // a signed, expiring link to the review page, where an Ingress serves previews
    resource('jobs/link', 'JobLink', ['get']),
  ],
};

const groupVersion = { groupVersion: GROUP_VERSION, version: VERSION };
export const API_GROUP = { kind: 'APIGroup', apiVersion: 'v1', name: GROUP, versions: [groupVersion], preferredVersion: groupVersion };
export const API_GROUP_LIST = { kind: 'APIGroupList', apiVersion: 'v1', groups: [API_GROUP] };
