/**
 * The preview serving a site, against nginx serving the same files, in one run. The site is
 * generated: 1,000 files (HTML pages in sections, each with an index, stylesheets, scripts and
 * incompressible images of mixed sizes), pushed to the real storage service as a version. The
 * preview runs its API app (preview/server.ts: the router under the aggregated API's prefix,
 * the path check, the site lookup, the answer memory or express.static, the isolation headers)
 * in a process of its own, compiled (dist/, as in its image); its cache is warmed first. nginx
 * (Debian's nginx-light, on a free port with a generated config: one worker, no access log,
 * sendfile, the same security headers) serves the very directory the preview extracted the
 * version into.
 *
 * Beside them, two floors (bench/support/node-floor.ts): the same answers from a Map in
 * node:http alone, and from inside express mounted as the preview's router is: what Node and
 * express cost before the preview does anything of its own.
 *
 * All are measured by wrk with the same Lua script: every request takes the next of a
 * shuffled list of the site's 1,000 file URLs and its section directories (`section-07/`,
 * served by their index.html), so the mix covers every file. Each run takes the servers in
 * another order. nginx runs one worker, as the preview is one process with one event loop. On
 * request the server under test and wrk are pinned to one core each; by default they are not:
 * on a machine shared with other work, a pinned process cannot leave a busy core, and the runs
 * scattered far more pinned than not. Besides requests/s, each server's CPU time per
 * request (all its threads, from /proc) is reported: on a shared machine it moves far less than
 * throughput. Goal: preview >= 0.8x nginx's requests/s.
 *
 *   make bench-preview      BENCH_RUNS=5 BENCH_PREVIEW_SECONDS=10 BENCH_PREVIEW_CONNECTIONS=32
 *   BENCH_PREVIEW_PROFILE=DIR  the preview process writes a CPU profile (--cpu-prof) into DIR
 *   BENCH_PREVIEW_PIN=1        pin the server to core 0 and wrk to core 1 (taskset)
 *   BENCH_PREVIEW_MEMORY=0     the preview without its answer memory (every file through send)
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { request } from 'undici';
import { PREVIEW_CSP } from '../preview/headers.js';
import { getFreePort } from '../test/support/ports.js';
import { packTree, writeTree, type TreeSpec } from '../test/support/preview-fixture.js';
import { REPO_ROOT } from '../test/support/sites.js';
import { startTestStorage } from '../test/support/storage.js';
import { BENCH_DIR, RUNS, SMOKE, headline, printTable, record, sized, summarize } from './lib.js';

const run = promisify(execFile);
const SECONDS = sized('BENCH_PREVIEW_SECONDS', 10, 1);
const CONNECTIONS = Number(process.env.BENCH_PREVIEW_CONNECTIONS ?? 32);
const FILES = 1000;
const SITE = 'bench-site';
const NAMESPACE = 'bench';

/** 1,000 files: 20 sections of an index and 39 pages, 60 stylesheets, 60 scripts, 80 images. */
function generateSite(): { files: TreeSpec; paths: string[] } {
  const files: TreeSpec = {};
  const words = 'bread crust oven flour rye sourdough croissant butter sugar morning harbor lane bakery fresh'.split(' ');
  const text = (seed: number, bytes: number) => {
    let t = '';
    for (let i = 0; t.length < bytes; i++) t += `${words[(seed * 7 + i * 13) % words.length]}${i % 12 === 11 ? '\n' : ' '}`;
    return t.slice(0, bytes);
  };
  const html = (seed: number, bytes: number) =>
    `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>page ${seed}</title><link rel="stylesheet" href="../assets/css/style-${seed % 60}.css"></head>\n<body><main><p>${text(seed, bytes)}</p></main><script src="../assets/js/app-${seed % 60}.js"></script></body></html>\n`;
  let n = 0;
  for (let s = 0; s < 20; s++) {
    files[`section-${String(s).padStart(2, '0')}/index.html`] = html(n++, 4000);
    for (let p = 0; p < 39; p++)
      files[`section-${String(s).padStart(2, '0')}/page-${p}.html`] = html(n++, 1500 + ((n * 2654435761) % 9000));
  }
  for (let i = 0; i < 60; i++)
    files[`assets/css/style-${i}.css`] = `/* ${i} */\n${text(i, 3000 + ((i * 7919) % 15000)).replace(/\n/g, ' {}\n')}`;
  for (let i = 0; i < 60; i++) files[`assets/js/app-${i}.js`] = `// ${i}\n${text(i, 4000 + ((i * 104729) % 20000)).replace(/\n/g, ';\n')}`;
  for (let i = 0; i < 80; i++) files[`assets/img/photo-${i}.${i % 2 ? 'png' : 'jpg'}`] = randomBytes(2000 + ((i * 15485863) % 60000));
  if (Object.keys(files).length !== FILES) throw new Error(`generated ${Object.keys(files).length} files, not ${FILES}`);
  const dirs = Array.from({ length: 20 }, (_, s) => `section-${String(s).padStart(2, '0')}/`);
  const paths = [...Object.keys(files), ...dirs];
  // a fixed shuffle, so both servers see the same sequence
  let seed = 42;
  for (let i = paths.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const j = seed % (i + 1);
    [paths[i], paths[j]] = [paths[j]!, paths[i]!];
  }
  return { files, paths };
}

const hasTaskset = existsSync('/usr/bin/taskset') && process.env.BENCH_PREVIEW_PIN === '1';
/** argv pinned to `core` where taskset exists. */
const pinned = (core: number, argv: string[]) => (hasTaskset ? ['taskset', '-c', String(core), ...argv] : argv);

interface Server {
  name: string;
  url: string;
  proc: ChildProcess;
  /** The path prefix of the site's files. */
  prefix: string;
  script: string;
}

/** A bench/support script in its own Node process on core 0; it prints its URL first. */
async function startNode(
  script: string,
  args: string[],
  env: Record<string, string>,
  profile?: string,
): Promise<{ url: string; proc: ChildProcess }> {
  const node = [process.execPath, ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []), '--import', 'tsx'];
  const [cmd, ...argv] = pinned(0, [...node, join(BENCH_DIR, 'support', script), ...args]);
  const proc = spawn(cmd!, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`${script} exited ${code}`)));
  });
  return { url, proc };
}

async function startNginx(root: string, dir: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = await getFreePort();
  const temp = (name: string) => `${name} ${join(dir, name)};`;
  const conf = `
worker_processes 1;
daemon off;
master_process off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  charset utf-8;
  charset_types text/css text/plain application/javascript application/json;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  ${temp('client_body_temp_path')} ${temp('proxy_temp_path')} ${temp('fastcgi_temp_path')} ${temp('uwsgi_temp_path')} ${temp('scgi_temp_path')}
  server {
    listen 127.0.0.1:${port};
    root ${root};
    index index.html;
    add_header Content-Security-Policy "${PREVIEW_CSP}" always;
    add_header X-Content-Type-Options nosniff always;
    add_header Referrer-Policy no-referrer always;
    add_header Cache-Control "private, no-cache" always;
  }
}
`;
  await writeFile(join(dir, 'nginx.conf'), conf);
  const [cmd, ...args] = pinned(0, ['/usr/sbin/nginx', '-c', join(dir, 'nginx.conf'), '-p', dir]);
  const proc = spawn(cmd!, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const ok = await request(`${url}/`, { method: 'HEAD' }).then(
      (r) => r.body.text().then(() => true),
      () => false,
    );
    if (ok) break;
    if (i > 100) throw new Error(`nginx did not start (see ${join(dir, 'error.log')})`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, proc };
}

/** A wrk Lua script walking `paths` under `prefix`, and counting non-200 answers. */
function wrkScript(prefix: string, paths: string[]): string {
  return `
local paths = { ${paths.map((p) => JSON.stringify(prefix + p)).join(',\n')} }
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
`;
}

interface WrkResult {
  rps: number;
  /** The server process's CPU time (user + system, all its threads) per request answered. */
  cpuUsPerRequest: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

const unitMs: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };

/** CPU time a process has used so far, in µs (from /proc: clock ticks of 10 ms). */
function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

async function wrk(url: string, script: string, seconds: number, serverPid: number): Promise<WrkResult> {
  const argv = pinned(1, ['wrk', '-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', '-s', script, url]);
  const cpuBefore = cpuUs(serverPid);
  const { stdout } = await run(argv[0]!, argv.slice(1), { maxBuffer: 1 << 20 });
  const cpu = cpuUs(serverPid) - cpuBefore;
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const latency = (p: string) => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(stdout);
    return m ? Number(m[1]) * unitMs[m[2]!]! : Number.NaN;
  };
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const errors = non2xx + (socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  if (!Number.isFinite(rps)) throw new Error(`wrk gave no Requests/sec:\n${stdout}`);
  return { rps, cpuUsPerRequest: cpu / requests, p50Ms: latency('50'), p99Ms: latency('99'), errors };
}

if (!existsSync(join(REPO_ROOT, 'dist', 'preview', 'server.js')))
  throw new Error('bench-preview runs the compiled preview: make build first');
for (const [binary, pkg] of [
  ['/usr/sbin/nginx', 'nginx-light'],
  ['/usr/bin/wrk', 'wrk'],
]) {
  if (!existsSync(binary!))
    throw new Error(`bench-preview needs ${binary} (Debian's ${pkg}: apt-get install ${pkg}, or test/support/node/prereqs.sh as root)`);
}
const scratch = await mkdtemp(join(tmpdir(), 'pw-bench-preview-'));
const storage = await startTestStorage();
const servers: Server[] = [];
try {
  const { files, paths } = generateSite();
  await writeTree(join(scratch, 'site'), files);
  const { version } = await storage.admin.putSiteArtifact(SITE, await packTree(join(scratch, 'site')));
  const cacheDir = join(scratch, 'cache');
  const preview = await startNode(
    'preview-process.ts',
    [],
    {
      BENCH_STORAGE_URL: storage.url,
      BENCH_STORAGE_TOKEN: storage.adminToken,
      BENCH_CACHE_DIR: cacheDir,
      BENCH_SITE_ID: SITE,
      BENCH_SITE_VERSION: version,
      ...(process.env.BENCH_PREVIEW_MEMORY === undefined ? {} : { BENCH_PREVIEW_MEMORY: process.env.BENCH_PREVIEW_MEMORY }),
    },
    process.env.BENCH_PREVIEW_PROFILE,
  );
  const previewPrefix = `/apis/review.pagewright.dev/v1alpha1/namespaces/${NAMESPACE}/sites/${SITE}/versions/${version}/files/`;
  servers.push({ name: 'preview', ...preview, prefix: previewPrefix, script: join(scratch, 'preview.lua') });
  // warm the cache: the first request downloads and extracts the version
  const warm = await request(`${preview.url}${previewPrefix}${paths[0]}`);
  await warm.body.text();
  if (warm.statusCode !== 200) throw new Error(`preview answered ${warm.statusCode}`);
  // nginx and the Node floor serve the very tree the preview extracted
  const root = join(cacheDir, version);
  await mkdir(join(scratch, 'nginx'), { recursive: true });
  servers.push({ name: 'nginx', ...(await startNginx(root, join(scratch, 'nginx'))), prefix: '/', script: join(scratch, 'root.lua') });
  servers.push({ name: 'node floor', ...(await startNode('node-floor.ts', [root], {})), prefix: '/', script: join(scratch, 'root.lua') });
  servers.push({
    name: 'express floor',
    ...(await startNode('node-floor.ts', [root, 'express'], {})),
    prefix: previewPrefix,
    script: join(scratch, 'express.lua'),
  });
  for (const server of servers) await writeFile(server.script, wrkScript(server.prefix, paths));

  // every path answers 200 with the same bytes everywhere
  for (const p of paths) {
    const bodies = await Promise.all(
      servers.map(async (server) => {
        const res = await request(`${server.url}${server.prefix}${p}`);
        const body = Buffer.from(await res.body.arrayBuffer());
        if (res.statusCode !== 200) throw new Error(`${server.name} answered ${res.statusCode} for ${p}`);
        return body;
      }),
    );
    if (bodies.some((b) => !b.equals(bodies[0]!))) throw new Error(`${p}: the servers sent different bodies`);
  }
  // warm-up: JIT, connections, the preview's memory of answers
  for (const server of servers) await wrk(server.url, server.script, SMOKE ? 1 : 3, server.proc.pid!);

  const results = new Map<string, WrkResult[]>(servers.map((s) => [s.name, []]));
  for (let i = 0; i < RUNS; i++) {
    // each run in another order, so that no server always goes first
    const order = servers.map((_, k) => servers[(i + k) % servers.length]!);
    for (const server of order) results.get(server.name)!.push(await wrk(server.url, server.script, SECONDS, server.proc.pid!));
    const line = servers.map((server) => {
      const r = results.get(server.name)![i]!;
      return `${server.name} ${r.rps.toFixed(0)} req/s (${r.cpuUsPerRequest.toFixed(0)} µs CPU each)`;
    });
    console.log(`run ${i + 1}/${RUNS}: ${line.join(', ')}`);
  }
  const of = (name: string) => results.get(name)!;
  const errors = [...results.values()].flat().reduce((a, r) => a + r.errors, 0);
  if (errors > 0) throw new Error(`${errors} requests failed or were not 200`);
  const ratio = (a: string, b: string) => of(a).map((r, i) => r.rps / of(b)[i]!.rps);
  const ratios = ratio('preview', 'nginx');
  const bytes = Object.values(files).reduce<number>(
    (a, c) => a + (typeof c === 'string' ? Buffer.byteLength(c) : Buffer.isBuffer(c) ? c.length : 0),
    0,
  );
  const nginxVersion = /nginx\/([\d.]+)/.exec((await run('/usr/sbin/nginx', ['-v'])).stderr)?.[1] ?? '';
  printTable(
    `preview vs nginx ${nginxVersion} and a bare Node server, ${FILES} files (${(bytes / 1024 / 1024).toFixed(1)} MiB), wrk -t1 -c${CONNECTIONS} -d${SECONDS}s, ${hasTaskset ? 'servers on core 0, wrk on core 1' : 'unpinned'}`,
    [
      ['nginx (1 worker)', of('nginx').map((r) => r.rps), 'req/s'],
      ['node floor (node:http, a Map)', of('node floor').map((r) => r.rps), 'req/s'],
      ['express floor (the same, in express)', of('express floor').map((r) => r.rps), 'req/s'],
      ['preview', of('preview').map((r) => r.rps), 'req/s'],
      ['ratio preview / nginx', ratios, 'x'],
      ['ratio node floor / nginx', ratio('node floor', 'nginx'), 'x'],
      ['ratio express floor / nginx', ratio('express floor', 'nginx'), 'x'],
      ['nginx CPU per request', of('nginx').map((r) => r.cpuUsPerRequest), 'µs'],
      ['node floor CPU per request', of('node floor').map((r) => r.cpuUsPerRequest), 'µs'],
      ['express floor CPU per request', of('express floor').map((r) => r.cpuUsPerRequest), 'µs'],
      ['preview CPU per request', of('preview').map((r) => r.cpuUsPerRequest), 'µs'],
      ['CPU ratio nginx / preview', of('preview').map((r, i) => of('nginx')[i]!.cpuUsPerRequest / r.cpuUsPerRequest), 'x'],
      ['nginx p99 latency', of('nginx').map((r) => r.p99Ms), 'ms'],
      ['preview p99 latency', of('preview').map((r) => r.p99Ms), 'ms'],
    ],
  );
  const r = summarize(ratios);
  const floor = summarize(ratio('node floor', 'nginx'));
  const cpu = summarize(of('preview').map((p, i) => of('nginx')[i]!.cpuUsPerRequest / p.cpuUsPerRequest));
  headline(
    `preview serves ${FILES} files at ${r.median.toFixed(2)}x nginx's requests/s [${r.min.toFixed(2)} .. ${r.max.toFixed(2)}] (goal >= 0.8); a bare Node server: ${floor.median.toFixed(2)}x; CPU per request: nginx's is ${cpu.median.toFixed(2)}x the preview's`,
  );
  await record('preview', {
    files: FILES,
    connections: CONNECTIONS,
    seconds: SECONDS,
    pinned: hasTaskset,
    ...Object.fromEntries(
      servers.flatMap((server) => {
        const key = server.name.replace(/ /g, '_');
        return [
          [`${key}_rps`, of(server.name).map((x) => x.rps)],
          [`${key}_cpu_us_per_request`, of(server.name).map((x) => x.cpuUsPerRequest)],
          [`${key}_p99_ms`, of(server.name).map((x) => x.p99Ms)],
        ];
      }),
    ),
    ratio: ratios,
  });
} finally {
  for (const server of servers) {
    server.proc.kill();
    if (server.proc.exitCode === null && server.proc.signalCode === null) await once(server.proc, 'exit');
  }
  await storage.close();
  await rm(scratch, { recursive: true, force: true });
}
