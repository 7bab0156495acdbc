/**
 * Sites to and from git, and a site push, each against the raw transfer measured in the same run
 * (the issue's goal: "a site push and a git publish of a 1,000-file site each <= 2 s over the raw
 * transfer"). The site is generated from a seed: BENCH_SITE_GIT_FILES files (default 1,000) over
 * 50 directories, HTML, CSS and JS of 1-20 KiB each, and BENCH_SITE_GIT_IMAGES (default 5) images
 * of 200 KiB of incompressible bytes among them. Its second version changes
 * BENCH_SITE_GIT_CHANGE_PCT percent of the files, chosen by the seed (default 5: in a text file a line
 * edited and one inserted, an image rewritten).
 *
 * All git traffic goes through test/support/git-server.ts (Debian's `git http-backend` behind
 * node:http in this process, Basic auth), to repositories that are byte-for-byte copies of one
 * template holding the first version (pushed there once by plain git), a fresh pair per run:
 *
 *   1. git publish: GitClient.publish (manager/sites/git-client.ts, the manager's own settings)
 *      of the second version's archive onto `main` of one copy, vs plain git doing the same
 *      change from a work tree already at the first version (`git add -A`, `git commit`,
 *      `git push`) to the other copy. The files of the work tree are written before the clock
 *      starts, as the archive is packed before it. Checks: both branches end at the same tree
 *      (the second version's), each one commit on top of the first.
 *   2. git import (a job's base from spec.source.git): GitClient.importTree of that branch vs
 *      `git clone --depth 1 --no-checkout` and vs `git clone --depth 1` with its checkout.
 *   3. site push (what `pagewright sites push` does, minus the review API hop): packDirectory of
 *      the directory and StorageClient.putSiteArtifact to the real storage service (in this
 *      process: test/support/storage.ts), vs an undici PUT of the already packed bytes to
 *      bench/support/raw-disk-server.mjs (a bare node:http server in a process of its own that
 *      writes them to a file and fsyncs). A file of the directory is rewritten before each run so
 *      that each push is a new version; the baseline's bytes are packed from the same directory
 *      beforehand and must hash the same. For scale, not compared: GNU `tar -czf` of the same
 *      directory (gzip level 6, as packDirectory's).
 *
 * Plain git runs with a clean environment (HOME a temporary directory, GIT_CONFIG_NOSYSTEM=1, no
 * global config) and the credentials as http.extraHeader through GIT_CONFIG_COUNT, as the
 * manager passes them. Runs alternate (or rotate, for three) which side goes first, after a
 * warm-up of each. The bench fails on a failed check, never on a missed goal.
 *
 *   make bench-site-git   (BENCH_RUNS=5, BENCH_SITE_GIT_FILES=1000, BENCH_SITE_GIT_IMAGES=5, BENCH_SITE_GIT_CHANGE_PCT=5)
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { DEFAULT_ARCHIVE_LIMITS } from '../common/archive-rules.js';
import { GitClient } from '../manager/sites/git-client.js';
import { UrlPolicy } from '../manager/webhooks/url-policy.js';
import { packDirectory } from '../runner/archive.js';
import { git, startGitServer } from '../test/support/git-server.js';
import { startTestStorage } from '../test/support/storage.js';
import { RUNS, alternating, headline, machine, printTable, record, sized, summarize, summarizeAll, timed, noise, prng } from './lib.js';
import { startRawDiskServer } from './support/services.js';

const FILES = sized('BENCH_SITE_GIT_FILES', 1000, 100);
const IMAGES = sized('BENCH_SITE_GIT_IMAGES', 5, 1);
const CHANGE_PCT = sized('BENCH_SITE_GIT_CHANGE_PCT', 5, 5);
const DIRS = 50;
const IMAGE_BYTES = 200 * 1024;
/** The issue's goal: at most this many seconds over the raw transfer. */
const GOAL_S = 2;
const USER = { username: 'bot', password: 'pw' };
const execFileAsync = promisify(execFile);

type Kind = 'html' | 'css' | 'js';
const word = (rand: () => number) => Math.floor(rand() * 36 ** 5).toString(36);

function text(kind: Kind, rand: () => number, i: number, bytes: number): string {
  const lines =
    kind === 'html'
      ? ['<!doctype html>', `<html lang="en"><head><meta charset="utf-8"><title>Page ${i}</title></head>`, '<body>']
      : [kind === 'css' ? `/* stylesheet ${i} */` : `// script ${i}`];
  let size = lines.join('\n').length;
  for (let n = 0; size < bytes; n++) {
    const line =
      kind === 'html'
        ? `  <p id="p${n}">${Array.from({ length: 4 + Math.floor(rand() * 12) }, () => word(rand)).join(' ')}</p>`
        : kind === 'css'
          ? `.c-${word(rand)} { color: #${word(rand).slice(0, 3)}; margin: ${Math.floor(rand() * 40)}px ${Math.floor(rand() * 40)}px; }`
          : `export function f_${word(rand)}(a, b) { return a * ${Math.floor(rand() * 1e4)} + b - ${Math.floor(rand() * 1e4)}; }`;
    lines.push(line);
    size += line.length + 1;
  }
  if (kind === 'html') lines.push('</body>', '</html>');
  return `${lines.join('\n')}\n`;
}

async function put(root: string, path: string, content: string | Buffer): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), content);
}

interface Site {
  files: number;
  bytes: number;
  /** Paths that differ between the two versions. */
  changed: string[];
}

/** The first version in `v1`, the second in `v2`. */
async function generate(v1: string, v2: string): Promise<Site> {
  const rand = prng(1000);
  const texts: Array<{ path: string; kind: Kind; body: string }> = [];
  const images: string[] = [];
  let bytes = 0;
  for (let i = 0; i < FILES; i++) {
    const d = i % DIRS;
    const dir = `section-${Math.floor(d / 5)}/part-${d % 5}`;
    if (i % Math.max(1, Math.floor(FILES / IMAGES)) === 0 && images.length < IMAGES) {
      const path = `${dir}/photo-${i}.jpg`;
      images.push(path);
      bytes += IMAGE_BYTES;
      await put(v1, path, noise(`${path} v1`, IMAGE_BYTES));
      continue;
    }
    const r = rand();
    const kind: Kind = r < 0.6 ? 'html' : r < 0.8 ? 'css' : 'js';
    const path = `${dir}/${kind === 'html' ? 'page' : kind === 'css' ? 'style' : 'app'}-${i}.${kind}`;
    const body = text(kind, rand, i, 1024 + Math.floor(rand() * 19 * 1024));
    texts.push({ path, kind, body });
    bytes += body.length;
    await put(v1, path, body);
  }
  await cp(v1, v2, { recursive: true });
  // exactly CHANGE_PCT% of the files, chosen by the seed
  const all = [...texts.map((t) => t.path), ...images];
  const order = all.map((p) => [rand(), p] as const).sort((a, b) => a[0] - b[0]);
  const changed = order.slice(0, Math.max(1, Math.round((FILES * CHANGE_PCT) / 100))).map(([, p]) => p);
  const byPath = new Map(texts.map((t) => [t.path, t]));
  for (const path of changed) {
    const t = byPath.get(path);
    if (!t) {
      await put(v2, path, noise(`${path} v2`, IMAGE_BYTES));
      continue;
    }
    const lines = t.body.split('\n');
    const at = Math.max(1, Math.floor(lines.length / 2));
    lines[at] = `${lines[at]} ${t.kind === 'html' ? '<!-- v2 -->' : '/* v2 */'}`;
    lines.splice(
      at + 1,
      0,
      t.kind === 'html' ? '  <p class="v2">new in v2</p>' : t.kind === 'css' ? '.v2 { color: red; }' : 'export const v2 = 2;',
    );
    await put(v2, path, lines.join('\n'));
  }
  return { files: FILES, bytes, changed: changed.sort() };
}

/** Runs `fns` in an order rotated by `run` (so no side always goes first); results in argument order. */
async function rotated(run: number, fns: Array<() => Promise<number>>): Promise<number[]> {
  const out: number[] = new Array(fns.length).fill(0);
  for (let k = 0; k < fns.length; k++) {
    const i = (k + run) % fns.length;
    out[i] = await fns[i]!();
  }
  return out;
}

async function countFiles(dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile() && !join(e.parentPath, e.name).includes(`${dir}/.git/`)).length;
}

const scratch = await mkdtemp(join(tmpdir(), 'pw-bench-site-git-'));
const server = await startGitServer({ users: { [USER.username]: USER.password } });
const storage = await startTestStorage({ maxArtifactBytes: 1024 * 1024 * 1024 });
const rawDisk = await startRawDiskServer();
const series = {
  publishRaw: [] as number[],
  publishOurs: [] as number[],
  publishOver: [] as number[],
  publishRatio: [] as number[],
  cloneBare: [] as number[],
  cloneCheckout: [] as number[],
  importOurs: [] as number[],
  importOverBare: [] as number[],
  importOverCheckout: [] as number[],
  pushRaw: [] as number[],
  pushOurs: [] as number[],
  pushPack: [] as number[],
  pushUpload: [] as number[],
  pushTar: [] as number[],
  pushOver: [] as number[],
  pushRatio: [] as number[],
};
let site!: Site;
let archiveBytes = 0;
try {
  const v1 = join(scratch, 'v1');
  const v2 = join(scratch, 'v2');
  site = await generate(v1, v2);
  const v2Archive = join(scratch, 'v2.tar.gz');
  archiveBytes = (await packDirectory(v2, v2Archive)).size;
  console.log(
    `site: ${site.files} files in ${DIRS} dirs, ${(site.bytes / 1024 / 1024).toFixed(1)} MiB (${(archiveBytes / 1024 / 1024).toFixed(1)} MiB as tar.gz); ${site.changed.length} files changed between versions`,
  );

  // plain git, as a person would run it: a clean HOME, no system or global config, the credentials as a header
  const home = join(scratch, 'home');
  await mkdir(home);
  const rawConfig: Array<[string, string]> = [
    ['http.extraHeader', `Authorization: Basic ${Buffer.from(`${USER.username}:${USER.password}`).toString('base64')}`],
    ['user.name', 'Bench'],
    ['user.email', 'bench@example.com'],
  ];
  const rawEnv: Record<string, string> = {
    HOME: home,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_COUNT: String(rawConfig.length),
    ...Object.fromEntries(rawConfig.flatMap(([k, v], i) => [[`GIT_CONFIG_KEY_${i}`, k] as const, [`GIT_CONFIG_VALUE_${i}`, v] as const])),
  };
  const raw = (args: string[], cwd?: string) => git(args, { env: rawEnv, ...(cwd ? { cwd } : {}) }).then((r) => r.stdout.trim());

  // the template: the first version, pushed once by plain git from the work tree
  const work = join(scratch, 'work');
  await cp(v1, work, { recursive: true });
  const templateUrl = await server.createRepo('template');
  await raw(['init', '--quiet', '--initial-branch=main'], work);
  await raw(['add', '-A'], work);
  await raw(['commit', '--quiet', '-m', 'v1'], work);
  await raw(['remote', 'add', 'origin', templateUrl], work);
  await raw(['push', '--quiet', 'origin', 'main'], work);
  const v1Commit = await raw(['rev-parse', 'HEAD'], work);
  // the second version's tree, as git names it (not committed here)
  for (const path of site.changed) await copyFile(join(v2, path), join(work, path));
  await raw(['add', '-A'], work);
  const v2Tree = await raw(['write-tree'], work);
  await raw(['reset', '--quiet', '--hard', v1Commit], work);

  const repoDir = (name: string) => join(server.root, `${name}.git`);
  const copyOfTemplate = async (name: string) => {
    await cp(repoDir('template'), repoDir(name), { recursive: true });
    return `${server.origin}/${name}.git`;
  };
  const mainOf = async (name: string) => ({
    tree: (await git(['rev-parse', 'main^{tree}'], { cwd: repoDir(name) })).stdout.trim(),
    parent: (await git(['rev-parse', 'main^'], { cwd: repoDir(name) })).stdout.trim(),
    commit: (await git(['rev-parse', 'main'], { cwd: repoDir(name) })).stdout.trim(),
  });

  const clientScratch = join(scratch, 'git-client');
  await mkdir(clientScratch);
  // the manager's defaults (manager/sites/config.ts), on loopback
  const client = new GitClient({
    policy: new UrlPolicy({ allowHttp: true, allowedCidrs: ['127.0.0.0/8'], settingPrefix: 'PAGEWRIGHT_SITE' }),
    scratchDir: clientScratch,
    timeoutMs: 120_000,
    maxFetchBytes: 1024 * 1024 * 1024,
    limits: DEFAULT_ARCHIVE_LIMITS,
  });

  // 1. git publish
  const publishRun = async (tag: string, run: number) => {
    const oursUrl = await copyOfTemplate(`ours-${tag}`);
    const rawUrl = await copyOfTemplate(`raw-${tag}`);
    // the work tree at the first version, its remote the raw copy, the second version's files written
    await raw(['reset', '--quiet', '--hard', v1Commit], work);
    await raw(['remote', 'set-url', 'origin', rawUrl], work);
    for (const path of site.changed) await copyFile(join(v2, path), join(work, path));
    const [r, o] = await alternating(
      run,
      () =>
        timed(async () => {
          await raw(['add', '-A'], work);
          await raw(['commit', '--quiet', '-m', 'v2'], work);
          await raw(['push', '--quiet', 'origin', 'HEAD:refs/heads/main'], work);
        }),
      () =>
        timed(() =>
          client.publish({
            url: oursUrl,
            branch: 'main',
            auth: USER,
            author: { name: 'Pagewright', email: 'pagewright@example.com' },
            archivePath: v2Archive,
            message: 'v2',
          }),
        ),
    );
    const [ours, rawMain] = [await mainOf(`ours-${tag}`), await mainOf(`raw-${tag}`)];
    if (!o.value.pushed || o.value.commit !== ours.commit)
      throw new Error(`publish said ${JSON.stringify(o.value)}, main is ${ours.commit}`);
    for (const [who, m] of [
      ['GitClient.publish', ours],
      ['git push', rawMain],
    ] as const) {
      if (m.tree !== v2Tree || m.parent !== v1Commit)
        throw new Error(`${who}: main has tree ${m.tree} on ${m.parent}, expected ${v2Tree} on ${v1Commit}`);
    }
    return { raw: r.ms / 1000, ours: o.ms / 1000 };
  };
  await publishRun('warm', 0);
  for (let run = 0; run < RUNS; run++) {
    const t = await publishRun(String(run), run);
    series.publishRaw.push(t.raw);
    series.publishOurs.push(t.ours);
    series.publishOver.push(t.ours - t.raw);
    series.publishRatio.push(t.ours / t.raw);
    await rm(repoDir(`ours-${run}`), { recursive: true, force: true });
    await rm(repoDir(`raw-${run}`), { recursive: true, force: true });
  }

  // 2. git import, of the branch the warm-up published (the second version, on the first)
  const sourceUrl = `${server.origin}/ours-warm.git`;
  const sourceCommit = (await mainOf('ours-warm')).commit;
  const clones = join(scratch, 'clones');
  const importRun = (run: number) =>
    rotated(run, [
      async () => {
        const dest = join(clones, `bare-${run}`);
        const { ms } = await timed(() => raw(['clone', '--quiet', '--depth', '1', '--no-checkout', '--', sourceUrl, dest]));
        const head = await raw(['rev-parse', 'HEAD'], dest);
        if (head !== sourceCommit) throw new Error(`clone --no-checkout: HEAD ${head}, expected ${sourceCommit}`);
        await rm(dest, { recursive: true, force: true });
        return ms / 1000;
      },
      async () => {
        const dest = join(clones, `checkout-${run}`);
        const { ms } = await timed(() => raw(['clone', '--quiet', '--depth', '1', '--', sourceUrl, dest]));
        const files = await countFiles(dest);
        if (files !== site.files) throw new Error(`clone: ${files} files checked out, expected ${site.files}`);
        await rm(dest, { recursive: true, force: true });
        return ms / 1000;
      },
      async () => {
        const { ms, value } = await timed(() => client.importTree({ url: sourceUrl, ref: 'main', auth: USER }));
        try {
          if (value.commit !== sourceCommit) throw new Error(`importTree: commit ${value.commit}, expected ${sourceCommit}`);
          if (value.size < archiveBytes / 2) throw new Error(`importTree: a ${value.size}-byte archive for a ${archiveBytes}-byte site`);
        } finally {
          await value.dispose();
        }
        return ms / 1000;
      },
    ]);
  await importRun(0);
  for (let run = 0; run < RUNS; run++) {
    const [bare, checkout, ours] = await importRun(run);
    series.cloneBare.push(bare!);
    series.cloneCheckout.push(checkout!);
    series.importOurs.push(ours!);
    series.importOverBare.push(ours! - bare!);
    series.importOverCheckout.push(ours! - checkout!);
  }

  // 3. site push: a new version each run (one file rewritten), packed beforehand for the baseline
  const pushDir = join(scratch, 'push');
  await cp(v2, pushDir, { recursive: true });
  const pushRun = async (run: number) => {
    await writeFile(join(pushDir, 'build.txt'), `push ${run} ${Date.now()}\n`);
    const rawArchive = join(scratch, 'raw-push.tar.gz');
    const oursArchive = join(scratch, 'ours-push.tar.gz');
    const expected = await packDirectory(pushDir, rawArchive);
    const [r, o] = await alternating(
      Math.max(0, run),
      () =>
        timed(async () => {
          const res = await request(`${rawDisk.url}/object`, {
            method: 'PUT',
            body: createReadStream(rawArchive),
            headers: { 'content-length': String(expected.size), 'content-type': 'application/gzip' },
          });
          const answer = await res.body.text();
          if (res.statusCode !== 201) throw new Error(`raw PUT: ${res.statusCode} ${answer}`);
        }),
      async () => {
        const pack = await timed(() => packDirectory(pushDir, oursArchive));
        const upload = await timed(() =>
          storage.admin.putSiteArtifact('bench-site', createReadStream(oursArchive), { sha256: pack.value.sha256, size: pack.value.size }),
        );
        return { pack, upload };
      },
    );
    if (o.pack.value.sha256 !== expected.sha256)
      throw new Error(`the same directory packed to ${o.pack.value.sha256} and ${expected.sha256}`);
    if (o.upload.value.version !== expected.sha256 || o.upload.value.size !== expected.size)
      throw new Error(`storage stored ${JSON.stringify(o.upload.value)}, expected ${expected.sha256} (${expected.size} bytes)`);
    // for scale, not compared: GNU tar and gzip (level 6, as ours) packing the same directory
    const tar = await timed(() => execFileAsync('tar', ['-C', pushDir, '-czf', join(scratch, 'tar-push.tar.gz'), '.']));
    return { raw: r.ms / 1000, pack: o.pack.ms / 1000, upload: o.upload.ms / 1000, tar: tar.ms / 1000 };
  };
  await pushRun(-1);
  for (let run = 0; run < RUNS; run++) {
    const t = await pushRun(run);
    const ours = t.pack + t.upload;
    series.pushRaw.push(t.raw);
    series.pushOurs.push(ours);
    series.pushPack.push(t.pack);
    series.pushUpload.push(t.upload);
    series.pushTar.push(t.tar);
    series.pushOver.push(ours - t.raw);
    series.pushRatio.push(ours / t.raw);
  }
} finally {
  await rawDisk.stop();
  await storage.close();
  await server.close();
  await rm(scratch, { recursive: true, force: true });
}

const s = series;
printTable(
  `1. git publish of a ${FILES}-file site, ${site.changed.length} files changed (an update of the branch)`,
  [
    ['raw: git add -A, commit, push from a work tree', s.publishRaw, 's'],
    ['pagewright: GitClient.publish of the archive', s.publishOurs, 's'],
    ['overhead (pagewright - raw)', s.publishOver, 's'],
    ['pagewright / raw', s.publishRatio, 'x'],
  ],
  3,
);
printTable(
  `2. git import of that branch (depth 1)`,
  [
    ['raw: git clone --depth 1 --no-checkout', s.cloneBare, 's'],
    ['raw: git clone --depth 1 (with checkout)', s.cloneCheckout, 's'],
    ['pagewright: GitClient.importTree (checked tar.gz)', s.importOurs, 's'],
    ['overhead over clone --no-checkout', s.importOverBare, 's'],
    ['overhead over clone with checkout', s.importOverCheckout, 's'],
  ],
  3,
);
printTable(
  `3. site push of the ${FILES}-file directory to storage`,
  [
    ['raw: undici PUT of the packed bytes (+ fsync)', s.pushRaw, 's'],
    ['pagewright: packDirectory + putSiteArtifact', s.pushOurs, 's'],
    ['  of which packDirectory', s.pushPack, 's'],
    ['  of which putSiteArtifact', s.pushUpload, 's'],
    ['for scale: tar -czf of the same directory', s.pushTar, 's'],
    ['overhead (pagewright - raw)', s.pushOver, 's'],
    ['pagewright / raw', s.pushRatio, 'x'],
  ],
  3,
);

const med = (v: number[]) => summarize(v).median;
const goal = (over: number) => `goal <= ${GOAL_S} s over raw: ${over <= GOAL_S ? 'met' : 'missed'}`;
await record('site-git', {
  files: FILES,
  images: IMAGES,
  change_pct: CHANGE_PCT,
  changed: site.changed.length,
  site_bytes: site.bytes,
  archive_bytes: archiveBytes,
  runs: RUNS,
  git_version: (await git(['--version'])).stdout.trim(),
  seconds: summarizeAll(series),
  goal_s: GOAL_S,
  met: { publish: med(s.publishOver) <= GOAL_S, push: med(s.pushOver) <= GOAL_S },
  machine: machine(),
});
const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(2)}`;
headline(
  `${FILES}-file site: git publish ${signed(med(s.publishOver))} s over git add/commit/push (${med(s.publishOurs).toFixed(2)} vs ${med(s.publishRaw).toFixed(2)} s; ${goal(med(s.publishOver))}); site push ${signed(med(s.pushOver))} s over a raw PUT (${med(s.pushOurs).toFixed(2)} vs ${med(s.pushRaw).toFixed(2)} s; ${goal(med(s.pushOver))}); git import ${signed(med(s.importOverBare))} s over clone --depth 1 --no-checkout, ${signed(med(s.importOverCheckout))} s over clone --depth 1`,
);

// open handles (the storage server's agents) must not keep a finished benchmark alive
process.exit(0);
