/**
 * Where the review API lives (preview/review-api.ts serves it; the CLI, the review page's
 * commands and the README call it): one definition of the aggregated API's group and version.
 */
export const REVIEW_GROUP = 'review.pagewright.dev';
export const REVIEW_VERSION = 'v1alpha1';
/** Where the API's paths start, under the kube-apiserver. */
export const REVIEW_API_ROOT = `/apis/${REVIEW_GROUP}/${REVIEW_VERSION}`;
