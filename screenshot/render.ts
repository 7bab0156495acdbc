/**
 * Renders pages of a site tree in headless Chromium (Debian's `chromium`, driven by
 * playwright-core) as PNGs: the screenshots of the review (issue 19, item 6), the base's and the
 * output's pages side by side.
 *
 * The tree is the agent's writing, so the page is hostile: it runs its scripts (a page is what
 * its scripts make it), but nothing it asks for leaves this process. Every request of the page
 * goes through one route handler, which serves files of the tree under a fixed origin that
 * resolves nowhere (SITE_ORIGIN) and aborts everything else, kept in `blocked`. What a route
 * does not see (a WebSocket, the browser's own fetches) meets a proxy that does not exist. A
 * file is served only if its real path is inside the tree (a link out of it is a 404) and
 * only up to MAX_FILE_BYTES. The pod this runs in has no egress and no credential either: this
 * is the inner wall, tested on its own (test/integration/screenshot-render.test.ts).
 *
 * Deterministic by construction, so that two renderings of one page compare equal pixel for
 * pixel: one viewport, device scale 1, animations stopped and the caret hidden, a full-page
 * screenshot cut at `maxHeight`, the light colour scheme, reduced motion, a fixed locale and
 * time zone.
 */
import { constants } from 'node:fs';
import { open, realpath, stat } from 'node:fs/promises';
import { join, posix, sep } from 'node:path';
import mime from 'mime-types';
import { type Browser, type BrowserContext, chromium, type Route } from 'playwright-core';

/** Where the tree is served from: `.invalid` never resolves (RFC 6761), and no request gets that far. */
export const SITE_ORIGIN = 'http://site.pagewright.invalid';
const MAX_FILE_BYTES = 32 * 1024 * 1024;
const CHROMIUM_ARGS = [
  '--no-sandbox', // root in a container without user namespaces (../shared/notes); the pod is the sandbox
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--proxy-server=http://127.0.0.1:9', // the discard port: whatever escapes the route goes nowhere
  '--proxy-bypass-list=<-loopback>',
  '--font-render-hinting=none',
];

export interface RenderOptions {
  /** Chromium's binary: Debian's by default. */
  executablePath?: string;
  /** The viewport, in CSS pixels (device scale 1). */
  width?: number;
  height?: number;
  /** A page taller than this is cut here. */
  maxHeight?: number;
  /** Per page: loading it and taking its screenshot. */
  timeoutMs?: number;
}

export interface Rendered {
  /** The page's path in the tree, as asked. */
  page: string;
  /** The PNG, or null when the page could not be rendered (`error` says why). */
  png: Buffer | null;
  error?: string;
  /** What the page asked for outside the tree, refused. */
  blocked: string[];
}

/** One Chromium for many pages; each page gets a fresh context (no cookie, storage or cache shared). */
export class Renderer {
  readonly #browser: Browser;
  readonly #opts: Required<Omit<RenderOptions, 'executablePath'>>;

  private constructor(browser: Browser, opts: RenderOptions) {
    this.#browser = browser;
    this.#opts = {
      width: opts.width ?? 1280,
      height: opts.height ?? 800,
      maxHeight: opts.maxHeight ?? 4000,
      timeoutMs: opts.timeoutMs ?? 15_000,
    };
  }

  static async start(opts: RenderOptions = {}): Promise<Renderer> {
    const browser = await chromium.launch({ executablePath: opts.executablePath ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
    return new Renderer(browser, opts);
  }

  /** Each of `pages` (paths in the tree under `root`), one after the other. */
  async render(root: string, pages: readonly string[]): Promise<Rendered[]> {
    const realRoot = await realpath(root);
    const out: Rendered[] = [];
    for (const page of pages) out.push(await this.#renderOne(realRoot, page));
    return out;
  }

  async close(): Promise<void> {
    await this.#browser.close();
  }

  async #renderOne(root: string, page: string): Promise<Rendered> {
    const blocked: string[] = [];
    const { width, height, maxHeight, timeoutMs } = this.#opts;
    const context: BrowserContext = await this.#browser.newContext({
      viewport: { width, height },
      deviceScaleFactor: 1,
      colorScheme: 'light',
      reducedMotion: 'reduce',
      locale: 'en-US',
      timezoneId: 'UTC',
      serviceWorkers: 'block',
      acceptDownloads: false,
    });
    try {
      await context.route('**/*', (route) => serve(route, root, blocked));
      await context.routeWebSocket(/.*/, (ws) => {
        blocked.push(ws.url());
        return ws.close();
      });
      const tab = await context.newPage();
      tab.setDefaultTimeout(timeoutMs);
      // a page that opens popups or dialogs must not hold the rendering up
      tab.on('dialog', (d) => void d.dismiss().catch(() => {}));
      context.on('page', (p) => {
        if (p !== tab) void p.close().catch(() => {});
      });
      await tab.goto(`${SITE_ORIGIN}/${encodePath(page)}`, { waitUntil: 'load', timeout: timeoutMs });
      await tab.evaluate(() => document.fonts.ready.then(() => undefined)).catch(() => {});
      const full = await tab.evaluate(() => Math.max(document.documentElement.scrollHeight, document.body?.scrollHeight ?? 0));
      const png = await tab.screenshot({
        fullPage: true,
        clip: { x: 0, y: 0, width, height: Math.max(1, Math.min(full, maxHeight)) },
        animations: 'disabled',
        caret: 'hide',
        timeout: timeoutMs,
      });
      return { page, png, blocked };
    } catch (err) {
      return { page, png: null, error: (err as Error).message.split('\n')[0] ?? String(err), blocked };
    } finally {
      await context.close().catch(() => {});
    }
  }
}

async function serve(route: Route, root: string, blocked: string[]): Promise<void> {
  const url = new URL(route.request().url());
  if (url.origin !== SITE_ORIGIN) {
    blocked.push(route.request().url());
    return route.abort('blockedbyclient');
  }
  const file = await fileOf(root, url.pathname);
  if (!file) return route.fulfill({ status: 404, contentType: 'text/plain', body: 'not found' });
  const type = mime.lookup(file.path) || 'application/octet-stream';
  return route.fulfill({ status: 200, contentType: mime.contentType(type) || type, body: file.body });
}

/** The file a URL path names under root (a directory's index.html), if it is in the tree and not too large. */
async function fileOf(root: string, pathname: string): Promise<{ path: string; body: Buffer } | null> {
  let rel: string;
  try {
    rel = decodeURIComponent(pathname);
  } catch {
    return null;
  }
  rel = posix.normalize(rel).replace(/^\/+/, '');
  if (rel.split('/').includes('..') || rel.includes('\0')) return null;
  let path = join(root, rel);
  try {
    if ((await stat(path)).isDirectory()) path = join(path, 'index.html');
    const real = await realpath(path);
    if (real !== root && !real.startsWith(root + sep)) return null; // a link out of the tree
    const handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const info = await handle.stat();
      if (!info.isFile() || info.size > MAX_FILE_BYTES) return null;
      return { path: real, body: await handle.readFile() };
    } finally {
      await handle.close();
    }
  } catch {
    return null;
  }
}

function encodePath(page: string): string {
  return page
    .split('/')
    .filter((s) => s !== '')
    .map(encodeURIComponent)
    .join('/');
}
