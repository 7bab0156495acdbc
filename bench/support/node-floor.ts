/**
 * The least a Node HTTP server can do per request, for bench/preview.ts: every file of a tree
 * read into a Map at start, each request answered with res.end(buffer) and the preview's
 * headers. No path check, no lookup of a job or a site, no cache: what any Node server serving
 * these files costs at best, measured beside nginx and the preview.
 *   node-floor.ts ROOT          node:http alone;
 *   node-floor.ts ROOT express  the same answer from inside express, mounted as the preview's
 *                               router is (the aggregated API's prefix with :namespace, then a
 *                               router with the site route's params): what express costs.
 * Prints its URL on stdout.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, relative } from 'node:path';

const root = process.argv[2]!;
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
};
const files = new Map<string, { body: Buffer; type: string }>();
for (const e of readdirSync(root, { recursive: true, withFileTypes: true })) {
  if (!e.isFile()) continue;
  const path = join(e.parentPath, e.name);
  files.set(`/${relative(root, path)}`, { body: readFileSync(path), type: TYPES[extname(path)] ?? 'application/octet-stream' });
}
function answer(url: string, res: ServerResponse): void {
  const file = files.get(url.endsWith('/') ? `${url}index.html` : url);
  if (!file) {
    res.statusCode = 404;
    res.end();
    return;
  }
  res.setHeader('Content-Security-Policy', "sandbox allow-scripts; frame-ancestors 'self'");
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'private, no-cache');
  res.setHeader('ETag', '"0123456789abcdef-1-2"');
  res.setHeader('Last-Modified', 'Tue, 01 Dec 2026 00:00:00 GMT');
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Content-Type', file.type);
  res.setHeader('Content-Length', file.body.length);
  res.end(file.body);
}

let handler: (req: IncomingMessage, res: ServerResponse) => void = (req, res) => answer(req.url ?? '/', res);
if (process.argv[3] === 'express') {
  const { default: express, Router } = await import('express');
  const app = express();
  app.disable('x-powered-by');
  const router = Router({ mergeParams: true });
  router.use('/sites/:site/versions/:version/files', (req, res) => answer(req.url, res));
  app.use('/apis/review.pagewright.dev/v1alpha1/namespaces/:namespace', router);
  handler = app;
}
const server = createServer(handler);
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => console.log(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
process.on('SIGTERM', () => process.exit(0));
