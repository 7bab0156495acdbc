/**
 * The headers that isolate what the agent wrote from whoever looks at it.
 *
 * Every preview response (files, redirects, 404s) carries `Content-Security-Policy: sandbox
 * allow-scripts`: the browser gives the document an opaque origin of its own, whether it is
 * framed by the review page or opened alone. Its script runs (a preview should behave like the
 * site), but it can read no cookie or storage of the preview's host, no DOM of the review page
 * or of another preview, and no response of the host (any fetch it makes is cross-origin, and
 * nothing here answers CORS). Left out of the sandbox on purpose:
 *   - allow-same-origin: it would give the page the host's origin, and with it everything above;
 *   - allow-forms: a form would submit to the host with the viewer's browser; a preview does
 *     not need to post anything to be looked at;
 *   - allow-popups: a popup is a new window the agent controls (a fake login page, say), and
 *     target=_blank links are a small loss in a preview;
 *   - allow-top-navigation*: the review page must stay where it is.
 * `frame-ancestors 'self'` lets the review page (same host) frame a preview and nothing else:
 * not another site, and not another preview (a preview's origin is opaque, so it is not
 * 'self'), so a preview cannot even display another one inside itself.
 * `X-Content-Type-Options: nosniff`: a file is only ever what its extension says (a .txt
 * with HTML in it stays text). `Referrer-Policy: no-referrer`: the host's URLs (signed link
 * tokens among them) never leave in a Referer. No cookie is ever set, by anything here.
 *
 * The review page is ours, not the agent's: a strict CSP of its own (no script at all, styles
 * and images from the host only, frames from the host only, not frameable), the same nosniff
 * and referrer policy, and no caching (it shows the job's state now).
 */
import type { Response } from 'express';

export const PREVIEW_CSP = "sandbox allow-scripts; frame-ancestors 'self'";

const REVIEW_CSP =
  "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const COMMON = { 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer' } as const;

/** Before anything else is written: errors and redirects carry them too. */
export function setPreviewHeaders(res: Response): void {
  res.setHeader('Content-Security-Policy', PREVIEW_CSP);
  for (const [k, v] of Object.entries(COMMON)) res.setHeader(k, v);
  // revalidate every time (`current` moves); files carry a version-scoped ETag, so that is a 304
  res.setHeader('Cache-Control', 'private, no-cache');
}

export function setReviewHeaders(res: Response): void {
  res.setHeader('Content-Security-Policy', REVIEW_CSP);
  for (const [k, v] of Object.entries(COMMON)) res.setHeader(k, v);
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  res.setHeader('Cache-Control', 'no-store');
}
