/**
 * The two express apps of the preview process, wired as main.ts runs them (and as the tests and
 * the benchmark do): the API routes under the aggregated API's path, and the public side (the
 * signed links, a health check). The aggregated API (TLS, front-proxy authentication,
 * SubjectAccessReview, discovery) mounts the same createPreviewRouter under the same prefix.
 */
import express, { type Express } from 'express';
import { installErrorHandling } from '../common/error-middleware.js';
import { REVIEW_API_ROOT } from '../common/review-api.js';
import { type PreviewDeps, type PreviewRouter, createPreviewRouter, createSignedLinkRouter } from './app.js';

/** Where the API router is mounted; `:namespace` is read by the router. */
export const REVIEW_API_PREFIX = `${REVIEW_API_ROOT}/namespaces/:namespace`;

export interface PreviewApps {
  /** jobs/… and sites/… under REVIEW_API_PREFIX. */
  api: Express;
  /** /p/<token>/… (when deps.links is set) and GET /healthz. */
  public: Express;
  /** The API router itself (its cache and memory). */
  router: PreviewRouter;
  close(): Promise<void>;
}

function bare(): Express {
  const app = express();
  app.disable('x-powered-by');
  return app;
}

export function createPreviewApps(deps: PreviewDeps): PreviewApps {
  const routers: PreviewRouter[] = [];
  const api = bare();
  const router = createPreviewRouter(deps);
  routers.push(router);
  api.use(REVIEW_API_PREFIX, router);
  installErrorHandling(api, {
    logger: deps.logger,
    routesHint: `${REVIEW_API_PREFIX}/jobs/NAME/{review,output/,base/,diff} and sites/NAME/versions/VERSION/files/`,
  });

  const pub = bare();
  pub.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  if (deps.links) {
    const links = createSignedLinkRouter({ ...deps, links: deps.links, cache: deps.cache ?? router.cache });
    routers.push(links);
    pub.use(links);
  }
  installErrorHandling(pub, { logger: deps.logger, routesHint: '/p/TOKEN/{review,output/,base/,files/}' });
  return { api, public: pub, router, close: async () => void (await Promise.all(routers.map((r) => r.close()))) };
}
