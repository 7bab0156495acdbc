/**
 * `make images-check`: the runner image runs a real job as a container under its pod's security
 * context, without Kubernetes. Storage, the scripted demo model and a callback receiver (the
 * manager's part) run here on the host; the container gets exactly the command, environment and
 * security context of the pod manager/pod-spec.ts builds, mapped onto `docker run`:
 *   runAsUser/runAsGroup -> --user, readOnlyRootFilesystem -> --read-only, drop ALL -> --cap-drop
 *   ALL, allowPrivilegeEscalation: false -> no-new-privileges, the emptyDirs (/work, /tmp) ->
 *   --tmpfs with an emptyDir's mode, and seccomp RuntimeDefault -> docker's default profile.
 *   --network host lets it reach the host.
 * The runner container alone: in a pod, codex runs in the agent sidecar (the trust split of
 * manager/pod-spec.ts, tested on the real node by test/node/); here the runner runs it itself
 * (no PAGEWRIGHT_AGENT_URL), talking to the scripted model directly (no gateway), so this checks
 * the image, not the split.
 * Two jobs: the demo edit of examples/site (must end `completed` with files changed), and a probe
 * whose one command shows what the agent's shell has (codex's rg on PATH, git, bash, the uid, a
 * read-only root). Exit code 0 when both hold; the docker command is printed, secrets masked.
 *
 *   tsx test/support/runner-image-check.ts [IMAGE]      (default pagewright-runner:0.1.0)
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { startCallbackReceiver } from '../../cli/callback-receiver.js';
import { demoScript } from '../../cli/demo-script.js';
import { type ModelScript, startModelServer } from '../../cli/model-server.js';
import { OFFLINE_MODEL } from '../../cli/offline-model.js';
import type { JobResult } from '../../common/schemas.js';
import { SECRET_KEY_GATEWAY, SECRET_KEY_TOKEN, buildPod } from '../../manager/pod-spec.js';
import { PagewrightJob } from '../../common/job-resource.js';
import { packDirectory } from '../../runner/archive.js';
import { defaultPodConfig } from './pod-config.js';
import { getFreePort } from './ports.js';
import { EXAMPLE_SITE } from './sites.js';
import { startTestStorage } from './storage.js';

const IMAGE = process.argv[2] ?? 'pagewright-runner:0.1.0';
const SITE = 'harbor-lane-bakery';
const PROBE_CMD = 'command -v rg git bash node; git --version; id -u; touch /probe 2>&1 | tail -1; echo ok > probe.txt';

/** The `docker run` arguments of a runner pod's only container, Secret values filled in. */
export function dockerRunArgs(pod: V1Pod, secret: Record<string, string>): { args: string[]; masked: string[] } {
  const spec = pod.spec!;
  const c = spec.containers[0]!;
  const sc = c.securityContext ?? {};
  const flags = ['--rm', '--network', 'host'];
  if (sc.readOnlyRootFilesystem) flags.push('--read-only');
  flags.push('--user', `${spec.securityContext?.runAsUser}:${spec.securityContext?.runAsGroup}`);
  for (const cap of sc.capabilities?.drop ?? []) flags.push('--cap-drop', cap);
  if (sc.allowPrivilegeEscalation === false) flags.push('--security-opt', 'no-new-privileges');
  const emptyDirs = new Set((spec.volumes ?? []).filter((v) => v.emptyDir).map((v) => v.name));
  // An emptyDir is writable by the pod's user (mode 0777, group fsGroup) and executable. docker's
  // tmpfs is noexec unless told, and over a directory of the image it takes that directory's
  // mode (0755) with root as owner whatever mode= says: so the pod's user owns it here.
  const tmpfs = `exec,uid=${spec.securityContext?.runAsUser},gid=${spec.securityContext?.fsGroup ?? spec.securityContext?.runAsGroup}`;
  for (const m of c.volumeMounts ?? []) if (emptyDirs.has(m.name)) flags.push('--tmpfs', `${m.mountPath}:${tmpfs}`);
  const env: string[] = [];
  const masked: string[] = [];
  // the runner container alone: codex runs in it (see the header)
  for (const e of (c.env ?? []).filter((v) => v.name !== 'PAGEWRIGHT_AGENT_URL')) {
    const key = e.valueFrom?.secretKeyRef?.key;
    const value = key ? secret[key] : e.value;
    if (value === undefined) throw new Error(`no value for ${e.name}`);
    env.push('-e', `${e.name}=${value}`);
    masked.push('-e', key ? `${e.name}=<${key} from the Secret>` : `${e.name}=${value}`);
  }
  const [entrypoint, ...rest] = c.command ?? [];
  const tail = ['--entrypoint', entrypoint!, c.image!, ...rest, ...(c.args ?? [])];
  return { args: ['run', ...flags, ...env, ...tail], masked: ['run', ...flags, ...masked, ...tail] };
}

async function runJob(
  name: string,
  prompt: string,
  script: ModelScript,
): Promise<{ result: JobResult; exitCode: number | null; toolOutputs: string[] }> {
  const storage = await startTestStorage();
  const model = await startModelServer({ script });
  const job = PagewrightJob.parse({
    metadata: { name, namespace: 'image-check', uid: randomUUID(), resourceVersion: '1' },
    spec: { siteId: SITE, prompt, timeoutSeconds: 120 },
  });
  const token = await storage.tokens.issue({ jobId: job.metadata.uid, siteId: SITE, attempt: 1, ttlSeconds: 3600 });
  const receiver = await startCallbackReceiver({ jobId: job.metadata.uid, token, onProgress: () => {} });
  const scratch = await mkdtemp(join(tmpdir(), 'pw-image-check-'));
  try {
    await packDirectory(EXAMPLE_SITE, join(scratch, 'site.tar.gz'));
    await storage.admin.putSiteArtifact(SITE, createReadStream(join(scratch, 'site.tar.gz')));
    const pod = buildPod(
      job,
      1,
      defaultPodConfig({
        runnerImage: IMAGE,
        runnerPort: await getFreePort(),
        managerUrl: receiver.url,
        storageUrl: storage.url,
        gatewayUrl: model.url,
        codexModel: OFFLINE_MODEL,
      }),
    );
    const { args, masked } = dockerRunArgs(pod, { [SECRET_KEY_TOKEN]: token, [SECRET_KEY_GATEWAY]: model.key });
    process.stdout.write(`\n[${name}] docker ${masked.map((a) => (/[\s"'{}]/.test(a) ? `'${a}'` : a)).join(' ')}\n`);
    const started = Date.now();
    const docker = spawn('docker', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    docker.stderr.on('data', (c: Buffer) => (log += c.toString()));
    const [exitCode] = (await once(docker, 'exit')) as [number | null];
    const result = await Promise.race([receiver.result, new Promise<null>((r) => setTimeout(() => r(null), 1000))]);
    if (!result) throw new Error(`[${name}] the runner exited ${exitCode} without a result:\n${log}`);
    process.stdout.write(
      `[${name}] exit ${exitCode} after ${((Date.now() - started) / 1000).toFixed(1)} s: ${result.status}` +
        `${result.status === 'completed' ? `, ${result.files_changed} file(s) changed: ${result.files.join(', ')}; summary: ${result.summary}` : `: ${result.reason}: ${result.error}`}\n`,
    );
    const outputs = model.responseRequests().at(-1)?.input as Array<{ type?: string; output?: unknown }> | undefined;
    const toolOutputs = (outputs ?? []).filter((i) => i.type === 'function_call_output').map((i) => String(i.output));
    return { result, exitCode, toolOutputs };
  } finally {
    await receiver.close();
    await model.close();
    await storage.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

const failures: string[] = [];
const check = (ok: boolean, what: string) => {
  process.stdout.write(`  ${ok ? 'ok  ' : 'FAIL'} ${what}\n`);
  if (!ok) failures.push(what);
};

const demo = await runJob('demo', 'Add a notice that the bakery is closed from December 24 to 26.', demoScript);
check(demo.exitCode === 0 && demo.result.status === 'completed', 'the demo job ends completed, exit code 0');
check(demo.result.status === 'completed' && demo.result.files_changed > 0, 'and changed files');

const probe = await runJob('probe', 'Report the tools.', [
  { kind: 'tools', calls: [{ type: 'shell', cmd: PROBE_CMD }] },
  { kind: 'message', text: JSON.stringify({ summary: 'Probed the tools.', files_changed: ['probe.txt'] }) },
]);
const shell = probe.toolOutputs[0] ?? '';
process.stdout.write(`[probe] the agent's command printed:\n${shell.replace(/^/gm, '    ')}\n`);
check(probe.result.status === 'completed', 'the probe job ends completed');
check(/\/rg\n/.test(shell), "codex's rg is on the agent's PATH");
check(/\/git\n/.test(shell) && /git version \d/.test(shell), 'git runs');
check(/\/bin\/bash\n/.test(shell) && /\/node\n/.test(shell), 'bash and node are on PATH');
check(/^10001$/m.test(shell), 'commands run as uid 10001');
check(!/setlocale/.test(shell), 'the C.UTF-8 locale codex asks for exists (bash warns otherwise)');
check(/Read-only file system/.test(shell), 'the root filesystem is read-only');

if (failures.length) {
  process.stdout.write(`\nimages-check: ${failures.length} check(s) failed\n`);
  process.exitCode = 1;
} else {
  process.stdout.write(`\nimages-check: ${IMAGE} ran both jobs under the pod's security context\n`);
}
