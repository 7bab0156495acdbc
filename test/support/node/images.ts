/**
 * Images for the real node. No registry is reachable here, so every image comes from the local
 * Docker engine: Pagewright's own (`make images`), and two built `FROM scratch` around a static
 * binary from control-plane/build.sh: the pod sandbox (pause) and the cluster DNS (CoreDNS).
 * They are imported into the node's containerd with `docker save | ctr images import`.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Containerd } from './containerd.js';

const run = promisify(execFile);

export const PAUSE_IMAGE = 'pagewright-pause:1';
export const COREDNS_IMAGE = 'pagewright-coredns:1';
const BINARY_LABEL = 'dev.pagewright.binary-sha256';

/** The id of a local Docker image, or null when there is none. */
export async function dockerImageId(tag: string): Promise<string | null> {
  return run('docker', ['image', 'inspect', '-f', '{{.Id}}', tag]).then(
    ({ stdout }) => stdout.trim(),
    () => null,
  );
}

/** Builds the pause and CoreDNS images unless they exist for these very binaries. */
export async function ensureDockerImages(binDir: string): Promise<void> {
  await scratchImage(PAUSE_IMAGE, join(binDir, 'pause'), ['/pause']);
  await scratchImage(COREDNS_IMAGE, join(binDir, 'coredns'), ['/coredns']);
}

async function scratchImage(tag: string, binary: string, entrypoint: string[]): Promise<void> {
  const sha = createHash('sha256')
    .update(await readFile(binary))
    .digest('hex');
  const current = await run('docker', ['image', 'inspect', '-f', `{{index .Config.Labels "${BINARY_LABEL}"}}`, tag]).then(
    ({ stdout }) => stdout.trim(),
    () => '',
  );
  if (current === sha) return;
  const dir = await mkdtemp(join(tmpdir(), 'pw-image-'));
  try {
    const name = entrypoint[0]!.slice(1);
    await copyFile(binary, join(dir, name));
    // nobody: neither needs root (CoreDNS listens on an unprivileged port, see dns.ts)
    await writeFile(
      join(dir, 'Dockerfile'),
      `FROM scratch\nCOPY ${name} /${name}\nUSER 65534:65534\nLABEL ${BINARY_LABEL}=${sha}\nENTRYPOINT ${JSON.stringify(entrypoint)}\n`,
    );
    await run('docker', ['build', '-q', '-t', tag, dir]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Imports Docker images into the node (one `docker save` of them all: shared layers go once). */
export async function importImages(containerd: Containerd, tags: string[]): Promise<void> {
  const missing: string[] = [];
  for (const tag of tags) if (!(await dockerImageId(tag))) missing.push(tag);
  if (missing.length)
    throw new Error(`images missing from the local Docker engine: ${missing.join(', ')} (make images builds Pagewright's)`);
  await containerd.importFrom('docker', ['save', ...tags]);
}
