/**
 * The preview service as its tests run it: real storage (in process, on a temp dir) behind a
 * recording proxy, the preview's two apps (the API router under the aggregated API's prefix,
 * the signed links) listening on loopback, and jobs and sites resolved from maps the test
 * fills. Sites are real trees packed with node-tar and uploaded like any other.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createTwoFilesPatch } from 'diff';
import { create } from 'tar';
import { silentLogger } from '../../common/logger.js';
import { SMALL_API_TIMEOUTS, listen } from '../../common/server-timeouts.js';
import { StorageClient } from '../../common/storage-client.js';
import { ArtifactCache } from '../../preview/artifact-cache.js';
import { jobCommands } from '../../preview/resolvers.js';
import type { ReviewJob, ReviewSite } from '../../preview/review-job.js';
import { type PreviewApps, REVIEW_API_PREFIX, createPreviewApps } from '../../preview/server.js';
import { type RecordingProxy, startRecordingProxy } from './recording-proxy.js';
import { type TestStorage, startTestStorage } from './storage.js';

export type TreeSpec = Record<string, string | Buffer | { symlink: string }>;

/** Writes `files` (paths relative to `root`) into a new directory. */
export async function writeTree(root: string, files: TreeSpec): Promise<void> {
  await mkdir(root, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    const full = join(root, path);
    await mkdir(dirname(full), { recursive: true });
    if (typeof content === 'object' && !Buffer.isBuffer(content)) await symlink(content.symlink, full);
    else await writeFile(full, content);
  }
}

/** The tree as a tar.gz, links kept as links. */
export async function packTree(root: string): Promise<Buffer> {
  const entries = (await readdir(root)).sort();
  const chunks: Buffer[] = [];
  for await (const chunk of create({ gzip: true, cwd: root, portable: true, follow: false }, entries)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A 1x1 PNG. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

const page = (title: string, body: string, prefix = '') =>
  `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${title}</title><link rel="stylesheet" href="${prefix}css/style.css"></head>\n<body>\n${body}\n<script src="${prefix}js/app.js"></script>\n</body></html>\n`;

const BASE_INDEX = page(
  'Harbor Lane Bakery',
  '<h1 id="title">Harbor Lane Bakery</h1>\n<p id="hours">Open daily from 7 to 18.</p>\n<img id="logo" src="img/logo.png" alt="logo">\n<nav><a id="about" href="about/">About</a> <a id="menu" href="menu.html">Menu</a></nav>',
);
const OUTPUT_INDEX = BASE_INDEX.replace(
  '<p id="hours">Open daily from 7 to 18.</p>',
  '<p id="hours">Open daily from 7 to 18.</p>\n<p id="notice">Closed from December 24 to 26.</p>',
);

/** The example bakery: pages, a directory index, styles, a script, an image, JSON, text that looks like HTML, a dotfile dir, a link. */
export function bakerySite(edited = false): TreeSpec {
  return {
    'index.html': edited ? OUTPUT_INDEX : BASE_INDEX,
    'about/index.html': page('About', '<h1>About us</h1>\n<a id="home" href="../index.html">Home</a>', '../'),
    'menu.html': page('Menu', '<h1>Menu</h1>\n<ul><li>Sourdough</li><li>Croissant</li></ul>'),
    'css/style.css': 'body { font-family: sans-serif; }\n#notice { color: #b00; font-weight: bold; }\n',
    'js/app.js': "document.documentElement.setAttribute('data-js', 'ran');\n",
    'img/logo.png': PNG,
    'data/hours.json': '{"open": 7, "close": 18}\n',
    'notes.txt': '<script>alert("not html")</script>\n',
    '.codex/instructions.md': '# instructions for the agent\n',
    'latest.html': { symlink: 'menu.html' },
    ...(edited ? { 'news.html': page('News', '<h1>Holiday hours</h1>') } : {}),
  };
}

/** The unified diff of the bakery edit, git style, as the runner writes diff.patch. */
export function bakeryDiff(): string {
  const index = createTwoFilesPatch('a/index.html', 'b/index.html', BASE_INDEX, OUTPUT_INDEX, '', '', { context: 3 })
    .split('\n')
    .slice(2) // the Index: and === lines
    .join('\n');
  const newsLines = page('News', '<h1>Holiday hours</h1>').replace(/\n$/, '').split('\n');
  const news = `--- /dev/null\n+++ b/news.html\n@@ -0,0 +1,${newsLines.length} @@\n${newsLines.map((l) => `+${l}`).join('\n')}\n`;
  return `diff --git a/index.html b/index.html\n${index}diff --git a/news.html b/news.html\nnew file mode 100644\n${news}`;
}

export interface PreviewFixture {
  storage: TestStorage;
  /** Between the preview and storage: what the preview fetched. */
  proxy: RecordingProxy;
  apps: PreviewApps;
  cache: ArtifactCache;
  cacheDir: string;
  /** Base URL of the API app (no trailing slash), and of a namespace under it. */
  apiUrl: string;
  nsUrl(namespace: string): string;
  publicUrl: string;
  linkSecret: string;
  jobs: Map<string, ReviewJob>;
  sites: Map<string, ReviewSite>;
  /** Uploads a tree as a new version of a storage site; returns the version. */
  pushSite(siteId: string, files: TreeSpec): Promise<string>;
  /** Stores a tree as a job's output.tar.gz (and a diff.patch if given); returns the output version. */
  putJobOutput(uid: string, files: TreeSpec, diff?: string): Promise<string>;
  /** Adds a job (namespace/name) the resolver answers. */
  addJob(job: Partial<ReviewJob> & Pick<ReviewJob, 'uid' | 'name' | 'namespace' | 'siteId'>): ReviewJob;
  close(): Promise<void>;
}

export interface PreviewFixtureOptions {
  cacheBytes?: number;
  linkTtlSeconds?: number;
  now?: () => Date;
}

function urlOf(server: Server): string {
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export async function startPreviewFixture(opts: PreviewFixtureOptions = {}): Promise<PreviewFixture> {
  const storage = await startTestStorage();
  const proxy = await startRecordingProxy(storage.url);
  const scratch = await mkdtemp(join(tmpdir(), 'pw-preview-'));
  const cacheDir = join(scratch, 'cache');
  const jobs = new Map<string, ReviewJob>();
  const sites = new Map<string, ReviewSite>();
  const linkSecret = randomBytes(32).toString('hex');
  const cacheBytes = opts.cacheBytes ?? 256 * 1024 * 1024;
  const cache = new ArtifactCache({
    dir: cacheDir,
    maxBytes: cacheBytes,
    limits: { maxEntries: 5000, maxBytes: 64 * 1024 * 1024 },
    logger: silentLogger,
  });
  const apps = createPreviewApps({
    storage: new StorageClient({ baseUrl: proxy.url, token: storage.adminToken }),
    resolveJob: async (namespace, name) => jobs.get(`${namespace}/${name}`) ?? null,
    resolveSite: async (namespace, name) => sites.get(`${namespace}/${name}`) ?? null,
    cacheDir,
    cacheBytes,
    cache,
    logger: silentLogger,
    links: { secret: linkSecret, baseUrl: 'https://preview.example.test', ttlSeconds: opts.linkTtlSeconds ?? 3600 },
    ...(opts.now ? { now: opts.now } : {}),
  });
  const api = await listen(apps.api, 0, '127.0.0.1', SMALL_API_TIMEOUTS);
  const pub = await listen(apps.public, 0, '127.0.0.1', SMALL_API_TIMEOUTS);
  let trees = 0;
  const packed = async (files: TreeSpec) => {
    const dir = join(scratch, `tree-${trees++}`);
    await writeTree(dir, files);
    return packTree(dir);
  };
  const apiUrl = urlOf(api);
  return {
    storage,
    proxy,
    apps,
    cache,
    cacheDir,
    apiUrl,
    nsUrl: (namespace) => `${apiUrl}${REVIEW_API_PREFIX.replace(':namespace', namespace)}`,
    publicUrl: urlOf(pub),
    linkSecret,
    jobs,
    sites,
    pushSite: async (siteId, files) => (await storage.admin.putSiteArtifact(siteId, await packed(files))).version,
    async putJobOutput(uid, files, diff) {
      const { version } = await storage.admin.putJobObject(uid, 'output.tar.gz', await packed(files));
      if (diff !== undefined) await storage.admin.putJobObject(uid, 'diff.patch', diff);
      return version;
    },
    addJob(partial) {
      const job: ReviewJob = {
        prompt: 'Add the holiday closure to the home page',
        commands: jobCommands(partial.namespace, partial.name, partial.siteId),
        ...partial,
      };
      jobs.set(`${job.namespace}/${job.name}`, job);
      return job;
    },
    async close() {
      for (const s of [api, pub]) {
        s.closeAllConnections();
        s.close();
      }
      await apps.close();
      await proxy.close();
      await storage.close();
      await rm(scratch, { recursive: true, force: true });
    },
  };
}
