/**
 * The runner pod's limits hold at the moment they are hit (issue 16, section 2), on the real node,
 * through the real Codex CLI: the scripted model has the agent do what exhausts a node.
 *   - processes: a fork bomb stops at the kubelet's podPidsLimit (test/support/node/cluster.ts),
 *     the job ends PidsLimitExceeded within seconds, nothing of the bomb is left, the node stays
 *     Ready and the next job succeeds; a normal job peaks far below the limit;
 *   - the work dir and /tmp are tmpfs of their sizes: a write past them fails at the limit with
 *     ENOSPC (charged to the agent container's memory, never the node's disk); the job ends
 *     WorkDirFull; a disk-backed emptyDir, the alternative, is pinned here as no write-time
 *     limit at all;
 *   - the one file on the node's disk the agent can write, /dev/termination-log, stops at
 *     PAGEWRIGHT_RUNNER_MAX_FILE_SIZE;
 *   - the runner's own volume: the agent prints without end, the job log keeps a bounded part;
 *   - not limited, pinned: the agent's own container log, until the kubelet rotates it.
 * Each test prints what it measured (`measured: ...`), the figures of BENCHMARKS.md.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { expect } from 'chai';
import { request } from 'undici';
import type { ModelTurn, TurnContext } from '../../cli/model-server.js';
import type { PagewrightJob } from '../../common/job-resource.js';
import { PROCESS_MARKER_ENV } from '../../common/process-marker.js';
import { MAX_OUTPUT_BYTES } from '../../runner/agent-launcher.js';
import { quantityBytes } from '../../manager/pod-spec.js';
import { CGROUP_ROOT } from '../support/node/cluster.js';
import { RUNNER_IMAGE } from '../support/node/shared.js';
import { type ManagerEnv, EXAMPLE_SITE_ID, randomName, startManagerEnv } from '../support/manager-env.js';
import { defaultPodConfig } from '../support/pod-config.js';
import { RESTRICTED_CONTAINER, waitForPod } from '../support/pods.js';
import { waitFor } from '../support/processes.js';

const finished = (j: PagewrightJob) => ['Succeeded', 'Failed', 'Cancelled'].includes(j.status.phase ?? '');
const DEFAULTS = defaultPodConfig();
const WORK_BYTES = quantityBytes(DEFAULTS.runnerWorkSizeLimit);
const MAX_FILE_BYTES = quantityBytes(DEFAULTS.runnerMaxFileSize);
const MiB = 2 ** 20;

/** One shell command per turn, each after the last one's output came back, then the final message. */
function commands(...cmds: string[]): (ctx: TurnContext) => ModelTurn {
  return (ctx) => {
    const cmd = cmds[ctx.round];
    if (cmd !== undefined) return { kind: 'tools', calls: [{ type: 'shell', cmd, yieldTimeMs: 60_000 }] };
    return { kind: 'message', text: JSON.stringify({ summary: 'Done as asked.', files_changed: [] }) };
  };
}

/** The pod's cgroup directory under one v1 controller on this node (Burstable or BestEffort), or null once it is gone. */
async function podCgroup(podUid: string, controller: 'pids' | 'memory'): Promise<string | null> {
  for (const qos of ['burstable', 'besteffort', '']) {
    const dir = join('/sys/fs/cgroup', controller, CGROUP_ROOT, 'kubepods', qos, `pod${podUid}`);
    if (await stat(dir).catch(() => null)) return dir;
  }
  return null;
}

const readNumber = async (file: string) => Number((await readFile(file, 'utf8')).trim());

/**
 * Samples a pod's pids cgroup (pids.current, the pod's pids.peak and pids.max) every 100 ms
 * until stopped, and the node's Ready condition with it.
 */
function podSampler(env: ManagerEnv, podUid: string) {
  const seen = { max: 0, peak: 0, highest: 0, last: -1, samples: 0, notReady: 0 };
  let running = true;
  const loop = (async () => {
    while (running) {
      const dir = await podCgroup(podUid, 'pids');
      if (dir) {
        const [current, peak, max] = await Promise.all(
          ['pids.current', 'pids.peak', 'pids.max'].map((f) => readNumber(join(dir, f)).catch(() => Number.NaN)),
        );
        if (Number.isFinite(current)) {
          seen.highest = Math.max(seen.highest, current!);
          seen.last = current!;
          seen.samples++;
        }
        if (Number.isFinite(peak)) seen.peak = Math.max(seen.peak, peak!);
        if (Number.isFinite(max)) seen.max = max!;
      }
      const node = await env.core.readNode({ name: env.cp.nodeName }).catch(() => null);
      if (node?.status?.conditions?.find((c) => c.type === 'Ready')?.status !== 'True') seen.notReady++;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    seen,
    async stop() {
      running = false;
      await loop;
      return seen;
    },
  };
}

/** Processes anywhere on this machine that carry the job's run marker (the agent's, whatever their session). */
async function markedProcesses(jobUid: string): Promise<number[]> {
  const needle = Buffer.from(`${PROCESS_MARKER_ENV}=${jobUid}.`);
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const environ = await readFile(`/proc/${entry}/environ`).catch(() => null);
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (environ?.includes(needle) && state !== 'Z') found.push(Number(entry));
  }
  return found;
}

describe('runner pod limits, on the real node', function () {
  this.timeout(300_000);
  let env: ManagerEnv;

  before(async () => {
    env = await startManagerEnv('limits');
    await env.startManager();
  });
  after(async () => env?.stop());

  /** Runs a job to its end, sampling its pod; resolves once the pod has ended too. */
  async function runJob(name: string, spec: Record<string, unknown>) {
    await env.createJob(name, { siteId: EXAMPLE_SITE_ID, retries: 2, ...spec });
    const uid = (await env.waitForJob(name, 'created', (j) => !!j.metadata.uid)).metadata.uid;
    const pod = await waitFor('its runner pod', async () => (await env.jobPods(uid))[0], 60_000, 100);
    const sampler = podSampler(env, pod.metadata!.uid!);
    try {
      const running = await env.waitForJob(
        name,
        'executing_codex',
        (j) => j.status.runnerPhase === 'executing_codex' || finished(j),
        60_000,
      );
      const codexStarted = Date.now();
      const done = await env.waitForJob(name, 'finished', finished, 180_000);
      const codexToEndMs = Date.now() - codexStarted;
      const afterEnd = { ...sampler.seen };
      const ended = await waitFor(
        'the runner pod to end',
        async () => (await env.jobPods(uid)).find((p) => ['Succeeded', 'Failed'].includes(p.status?.phase ?? '')),
        60_000,
        200,
      );
      return { done, running, pod: ended, codexToEndMs, afterEnd, pids: await sampler.stop() };
    } finally {
      await sampler.stop();
    }
  }

  /** The outputs of the shell commands of the conversation that printed `marker`, as the model received them. */
  function toolOutputs(marker: string): string {
    const outputs = env.model
      .responseRequests()
      .map((body) => ((body.input ?? []) as Array<{ type?: string; output?: unknown }>).filter((i) => i.type === 'function_call_output'))
      .map((items) => items.map((i) => String(i.output)))
      .filter((texts) => texts.some((t) => t.includes(marker)));
    // every turn sends the whole conversation again: the last request has all of it
    return outputs.at(-1)?.join('\n') ?? `(no command printed ${marker})`;
  }

  it('a normal job and a busy one (ripgrep, git, 16 commands at once) succeed under podPidsLimit, and peak far below it', async () => {
    const normal = await runJob(randomName('normal'), { prompt: 'Add a notice that the bakery is closed from December 24 to 26.' });
    expect(normal.done.status, await env.diagnostics()).to.include({ phase: 'Succeeded', attempt: 1 });
    expect(normal.done.status.filesChanged).to.be.above(0);
    // the kubelet put the limit on the pod's cgroup; the job used a small part of it
    expect(normal.pids.max, 'the pod cgroup pids.max').to.equal(env.cp.podPidsLimit);
    expect(normal.pids.samples).to.be.above(5);
    expect(normal.pids.peak, 'pids.peak')
      .to.be.above(10)
      .and.below(env.cp.podPidsLimit / 8);
    // the tools an agent runs on a site, several at once (in a copy: no .git in the output)
    env.scripts.set(
      'busy',
      commands(
        'echo busy-report; rg -n --threads 8 -i bakery . | wc -l',
        'cp -r . /tmp/copy && cd /tmp/copy && git init -q && git add -A && git -c user.email=t@example.com -c user.name=t commit -qm base && git log --oneline | wc -l',
        "seq 1 64 | xargs -P 16 -I{} sh -c 'sleep 0.3; echo {}' | wc -l",
      ),
    );
    const busy = await runJob(randomName('busy'), { prompt: 'SCRIPT:busy' });
    expect(busy.done.status, await env.diagnostics()).to.include({ phase: 'Succeeded', attempt: 1 });
    expect(toolOutputs('busy-report')).to.match(/\n64\n?$/);
    expect(busy.pids.peak, 'pids.peak')
      .to.be.above(normal.pids.peak)
      .and.below(env.cp.podPidsLimit / 4);
    console.log(
      `      measured: pods peaked at ${normal.pids.peak} pids (a normal job) and ${busy.pids.peak} (a busy one): tasks, processes and threads; limit ${env.cp.podPidsLimit}`,
    );
  });

  it('a fork bomb stops at the limit: PidsLimitExceeded within seconds, nothing of it is left, the node stays Ready, the next job succeeds', async () => {
    // the classic, then a foreground command: codex kills a finished command's process group, so
    // a bomb whose command returns at once dies with it (measured); one that keeps it open lives
    env.scripts.set('forkbomb', commands('echo bomb-started; :(){ :|:& };:; sleep 120'));
    const name = randomName('forkbomb');
    const { done, pod, pids, codexToEndMs, afterEnd } = await runJob(name, { prompt: 'SCRIPT:forkbomb' });
    expect(done.status, await env.diagnostics()).to.include({ phase: 'Failed', reason: 'PidsLimitExceeded', attempt: 1 });
    expect(done.status.message).to.match(/pids limit .*refused \d+ fork/);
    // it reached the limit and never passed it
    expect(pids.highest, 'the pod pids.current').to.be.at.most(env.cp.podPidsLimit);
    expect(pids.peak, 'the pod pids.peak')
      .to.be.at.least(env.cp.podPidsLimit - 8)
      .and.at.most(env.cp.podPidsLimit);
    expect(codexToEndMs, `from executing_codex to the job failed\n${await env.podLogs(pod.metadata!.name!, 'agent')}`).to.be.below(30_000);
    // nothing left: the bomb's processes were killed and reaped (zombies would hold the pod's
    // pids) by the time the job ended, while the pod still ran
    expect(afterEnd.last, "the pod's pids when the job ended").to.be.within(0, 64);
    expect(await markedProcesses(done.metadata.uid), 'marked processes on the machine').to.deep.equal([]);
    // the runner's container lived through it and ended well; the sidecar was never restarted
    expect(pod.status?.containerStatuses?.[0]?.state?.terminated, JSON.stringify(pod.status)).to.include({ exitCode: 1 });
    expect(pod.status?.initContainerStatuses?.find((c) => c.name === 'agent')?.restartCount).to.equal(0);
    // the node: Ready throughout, its kubelet healthy
    expect(pids.notReady, 'samples with the node not Ready').to.equal(0);
    const healthz = await request('http://127.0.0.1:10348/healthz');
    expect([healthz.statusCode, await healthz.body.text()]).to.deep.equal([200, 'ok']);
    console.log(
      `      measured: fork bomb: the pod held at ${pids.highest} pids (limit ${env.cp.podPidsLimit}), the job failed ${(codexToEndMs / 1000).toFixed(1)} s after executing_codex began, ${afterEnd.last} pids left when it ended`,
    );

    const next = randomName('afterbomb');
    const after = await runJob(next, { prompt: 'Add a notice that the bakery is closed on Sunday.' });
    expect(after.done.status, await env.diagnostics()).to.include({ phase: 'Succeeded', attempt: 1 });
  });

  it('the work dir and /tmp are tmpfs of their sizes: a write past them fails at the limit with ENOSPC, in memory, and the job ends WorkDirFull', async () => {
    // /tmp first (256Mi), then the work dir: 400 MiB files until one fails
    const fill = `
echo "fill-report"
grep -E ' /(work|tmp) ' /proc/mounts
dd if=/dev/zero of=/tmp/fill bs=1M count=400 2>&1 | grep -E 'No space|copied'
echo "tmp-bytes: $(stat -c %s /tmp/fill)"
start=$(date +%s%N); i=0
while err=$(dd if=/dev/zero of=fill$i bs=1M count=400 status=none 2>&1); do i=$((i+1)); done
end=$(date +%s%N); echo "$err"
echo "work-bytes: $(du -cb fill* | tail -1 | cut -f1) in $(( (end - start) / 1000000 )) ms"
echo "df: $(df -B1 --output=size,used,avail /work | tail -1)"
echo "shmem: $(grep -E '^shmem ' /sys/fs/cgroup/memory/memory.stat | cut -d' ' -f2) limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
`;
    env.scripts.set('fill', commands(fill));
    const name = randomName('fill');
    const { done } = await runJob(name, { prompt: 'SCRIPT:fill' });
    expect(done.status, await env.diagnostics()).to.include({ phase: 'Failed', reason: 'WorkDirFull', attempt: 1 });
    expect(done.status.message).to.match(/filled its work directory: \d+ of 1024 MiB used/);
    const out = toolOutputs('fill-report');
    expect(out, 'the mounts').to.match(new RegExp(`tmpfs /work tmpfs [^ ]*size=${WORK_BYTES / 1024}k`));
    expect(out).to.match(/tmpfs \/tmp tmpfs [^ ]*size=262144k/);
    // each writer got ENOSPC at its volume's size, not a byte more
    expect(out).to.match(/No space left on device/);
    const tmpBytes = Number(/tmp-bytes: (\d+)/.exec(out)?.[1]);
    expect(tmpBytes).to.equal(256 * MiB);
    const [, work, ms] = /work-bytes: (\d+) in (\d+) ms/.exec(out) ?? [];
    expect(Number(work), 'bytes the agent got into the work dir').to.be.within(WORK_BYTES - 16 * MiB, WORK_BYTES);
    const [, size, used, avail] = /df: \s*(\d+)\s+(\d+)\s+(\d+)/.exec(out) ?? [];
    expect([Number(size), Number(used), Number(avail)]).to.deep.equal([WORK_BYTES, WORK_BYTES, 0]);
    // and it is memory, charged to the agent container, whose limit covers it
    const [, shmem, limit] = /shmem: (\d+) limit: (\d+)/.exec(out) ?? [];
    expect(Number(shmem), "the agent container's tmpfs pages").to.be.at.least(Number(work) + tmpBytes);
    expect(Number(limit)).to.be.above(Number(shmem));
    console.log(
      `      measured: tmpfs work dir: ${(Number(work) / MiB).toFixed(0)} MiB written in ${ms} ms (${(Number(work) / MiB / (Number(ms) / 1000)).toFixed(0)} MiB/s), then ENOSPC; /tmp stopped at ${tmpBytes / MiB} MiB; ${(Number(shmem) / MiB).toFixed(0)} MiB charged to the agent container (limit ${(Number(limit) / MiB).toFixed(0)} MiB)`,
    );
  });

  it('a disk-backed emptyDir is no limit at write time: a writer passes its sizeLimit and is evicted only later (why the work dir is a tmpfs)', async () => {
    // the alternative, pinned: should the kubelet ever refuse these writes, this fails and the
    // choice can be made again
    const name = randomName('diskdir');
    const script = `
start=$(date +%s%N)
for i in $(seq 1 16); do dd if=/dev/zero of=/work/f$i bs=1M count=64 conv=fsync status=none || { echo "write failed at $i"; exit 3; }; done
echo "wrote 1024 MiB in $(( ($(date +%s%N) - start) / 1000000 )) ms"
sleep 300`;
    const body: V1Pod = {
      metadata: { name, namespace: env.namespace },
      spec: {
        restartPolicy: 'Never',
        terminationGracePeriodSeconds: 2,
        containers: [
          {
            name: 'main',
            image: RUNNER_IMAGE,
            imagePullPolicy: 'Never',
            command: ['bash', '-c', script],
            ...RESTRICTED_CONTAINER,
            resources: { limits: { cpu: '1', memory: '256Mi' } },
            volumeMounts: [{ name: 'work', mountPath: '/work' }],
          },
        ],
        securityContext: { fsGroup: 10001 },
        volumes: [{ name: 'work', emptyDir: { sizeLimit: '256Mi' } }],
      },
    };
    await env.core.createNamespacedPod({ namespace: env.namespace, body });
    const log = await waitFor(
      'the writer to finish',
      async () => {
        const text = await env.core.readNamespacedPodLog({ namespace: env.namespace, name }).catch(() => '');
        if (/write failed/.test(text)) throw new Error(`the disk-backed emptyDir refused a write: ${text}`);
        return /wrote 1024 MiB in (\d+) ms/.exec(text);
      },
      120_000,
      100,
    );
    const wroteAt = Date.now();
    const evicted = await waitForPod(env.core, env.namespace, name, 'evicted', (p) => p.status?.reason === 'Evicted', 120_000);
    const evictedAfter = Date.now() - wroteAt;
    expect(evicted.status?.message).to.match(/Usage of EmptyDir volume "work" exceeds the limit "256Mi"/);
    console.log(
      `      measured: disk-backed emptyDir (sizeLimit 256Mi): 1024 MiB written without an error in ${log[1]} ms (fsync'd); evicted ${(evictedAfter / 1000).toFixed(1)} s after that`,
    );
  });

  it("a tmpfs its container's memory limit cannot hold: the writer is OOM-killed before the tmpfs is full (why the limits add the volumes)", async () => {
    const name = randomName('tmpfsoom');
    const body: V1Pod = {
      metadata: { name, namespace: env.namespace },
      spec: {
        restartPolicy: 'Never',
        terminationGracePeriodSeconds: 2,
        containers: [
          {
            name: 'main',
            image: RUNNER_IMAGE,
            imagePullPolicy: 'Never',
            command: ['bash', '-c', 'grep " /work " /proc/mounts; dd if=/dev/zero of=/work/fill bs=1M count=400; echo "dd exit: $?"'],
            ...RESTRICTED_CONTAINER,
            resources: { limits: { cpu: '1', memory: '128Mi' } },
            volumeMounts: [{ name: 'work', mountPath: '/work' }],
          },
        ],
        securityContext: { fsGroup: 10001 },
        volumes: [{ name: 'work', emptyDir: { medium: 'Memory', sizeLimit: '1Gi' } }],
      },
    };
    await env.core.createNamespacedPod({ namespace: env.namespace, body });
    const ended = await waitForPod(
      env.core,
      env.namespace,
      name,
      'ended',
      (p) => ['Succeeded', 'Failed'].includes(p.status?.phase ?? ''),
      60_000,
    );
    // the tmpfs is the pod's memory limit (128Mi), not its sizeLimit; the writer never got ENOSPC
    expect(ended.status?.containerStatuses?.[0]?.state?.terminated, JSON.stringify(ended.status)).to.include({
      exitCode: 137,
      reason: 'OOMKilled',
    });
    console.log('      measured: a 1Gi memory-backed emptyDir in a 128Mi container: a tmpfs of 128Mi, and dd OOMKilled (137), no ENOSPC');
  });

  it("/dev/termination-log, on the node's disk: the agent cannot write more than PAGEWRIGHT_RUNNER_MAX_FILE_SIZE there", async () => {
    const cmd = `echo "termlog-report"; ulimit -f; ulimit -f unlimited 2>/dev/null; echo "raise: $?"; ls -l /dev/termination-log; head -c ${MAX_FILE_BYTES + 64 * MiB} /dev/zero > /dev/termination-log; echo "rc=$?"; echo "size: $(stat -c %s /dev/termination-log)"`;
    env.scripts.set('termlog', commands(cmd));
    const name = randomName('termlog');
    await env.createJob(name, { siteId: EXAMPLE_SITE_ID, prompt: 'SCRIPT:termlog' });
    const uid = (await env.waitForJob(name, 'created', (j) => !!j.metadata.uid)).metadata.uid;
    const done = await env.waitForJob(name, 'finished', finished, 180_000);
    expect(done.status, await env.diagnostics()).to.include({ phase: 'Succeeded' });
    const out = toolOutputs('termlog-report');
    expect(/termlog-report\n(\w+)\n/.exec(out)?.[1], `ulimit -f in: ${out}`).to.equal(String(MAX_FILE_BYTES / 1024));
    // a hard limit: the agent (no CAP_SYS_RESOURCE) cannot raise it
    expect(out).to.contain('raise: 1');
    // bash reports the writer killed by SIGXFSZ (128 + 25)
    expect(out)
      .to.match(/rc=153/)
      .and.to.contain(`size: ${MAX_FILE_BYTES}`);
    // the file itself, on the node: the kubelet's, under its root directory
    const [pod] = await env.jobPods(uid);
    const dir = join(env.cp.runDir, 'kubelet', 'pods', pod!.metadata!.uid!, 'containers', 'agent');
    const sizes = await Promise.all((await readdir(dir)).map(async (f) => (await stat(join(dir, f))).size));
    expect(sizes).to.deep.equal([MAX_FILE_BYTES]);
    console.log(`      measured: /dev/termination-log stopped at ${MAX_FILE_BYTES / MiB} MiB on the node's disk (the writer got SIGXFSZ)`);
  });

  it("not limited here, pinned: the agent writes into its own container's log, which the kubelet only rotates at its next look", async () => {
    // the stdout of the agent container's PID 1 (its init, the agent's uid) is the container log
    const cmd =
      'echo "containerlog-report"; line=$(head -c 1000 /dev/zero | tr "\\0" x); yes "$line" | head -c 300000000 > /proc/1/fd/1; echo "log write: $?"';
    env.scripts.set('containerlog', commands(cmd));
    const name = randomName('containerlog');
    await env.createJob(name, { siteId: EXAMPLE_SITE_ID, prompt: 'SCRIPT:containerlog' });
    const uid = (await env.waitForJob(name, 'created', (j) => !!j.metadata.uid)).metadata.uid;
    const pod = await waitFor('its runner pod', async () => (await env.jobPods(uid))[0], 60_000, 100);
    const dir = join(env.cp.runDir, 'pod-logs', `${env.namespace}_${pod.metadata!.name}_${pod.metadata!.uid}`, 'agent');
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const files = await readdir(dir).catch(() => [] as string[]);
        const sizes = await Promise.all(
          files.map((f) =>
            stat(join(dir, f)).then(
              (st) => st.size,
              () => 0,
            ),
          ),
        );
        peak = Math.max(
          peak,
          sizes.reduce((a, b) => a + b, 0),
        );
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    let done: PagewrightJob;
    try {
      done = await env.waitForJob(name, 'finished', finished, 180_000);
    } finally {
      sampling = false;
      await sampler;
    }
    expect(done.status, await env.diagnostics()).to.include({ phase: 'Succeeded' });
    expect(toolOutputs('containerlog-report')).to.contain('log write: 0');
    // more than the kubelet keeps of a container's log (containerLogMaxSize 10Mi x 5 files): it
    // was on the node's disk before a rotation caught up; should this ever be limited at write
    // time, this fails and README "Runner pod limits" can say so
    expect(peak, 'the agent container log on the node, at its largest').to.be.above(50 * MiB);
    console.log(`      measured: 300 MB into the agent container's log: it reached ${(peak / MiB).toFixed(0)} MiB on the node's disk`);
  });

  it('the agent prints without end: the runner keeps a bounded part of it in the job log, and the job goes on', async () => {
    // The agent's output reaches the runner's log as codex's events: codex cuts each command's
    // output at about 1 MiB there, and 40 commands of 2 MB each make ~40 MiB of them. It cannot
    // write into codex's own stdio instead: Node gives a child sockets, not pipes, and a socket
    // cannot be opened through /proc (ENXIO, pinned here with the first command).
    const probe = [
      'echo "stdio-report"',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash expansion, for the agent's shell
      'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = codex ] && c=${p#/proc/}; done',
      'echo "codex: $c"; head -c 1000000 /dev/zero > /proc/$c/fd/2; echo "stderr write: $?"',
    ].join('\n');
    const big = "head -c 2000000 /dev/zero | tr '\\0' x; echo";
    env.scripts.set('flood', commands(probe, ...Array.from({ length: 40 }, () => big)));
    const name = randomName('flood');
    await env.createJob(name, { siteId: EXAMPLE_SITE_ID, prompt: 'SCRIPT:flood' });
    const uid = (await env.waitForJob(name, 'created', (j) => !!j.metadata.uid)).metadata.uid;
    const pod = await waitFor('its runner pod', async () => (await env.jobPods(uid))[0], 60_000, 100);
    // the job log as the runner writes it, on its private volume on the node's disk, read once the
    // runner has logged the job's end (before it uploads the log and exits)
    const file = join(
      env.cp.runDir,
      'kubelet',
      'pods',
      pod.metadata!.uid!,
      'volumes',
      'kubernetes.io~empty-dir',
      'runner-private',
      'job.log',
    );
    const log = await waitFor(
      'the runner to log the job completed',
      async () => {
        const text = await readFile(file, 'utf8').catch(() => '');
        return /"message":"job (completed|failed)"/.test(text) ? text : null;
      },
      180_000,
      250,
    );
    const done = await env.waitForJob(name, 'finished', finished, 60_000);
    expect(done.status, await env.diagnostics()).to.include({ phase: 'Succeeded' });
    const out = toolOutputs('stdio-report');
    expect(out, out)
      .to.match(/codex: \d+\n/)
      .and.to.match(/fd\/2: No such device or address\nstderr write: 1/);
    expect(log.length, 'the job log').to.be.within(MAX_OUTPUT_BYTES - 2 * MiB, MAX_OUTPUT_BYTES + 2 * MiB);
    expect(log).to.contain("the rest of this run's output is dropped");
    expect(log).to.match(/"message":"job completed"/);
    console.log(
      `      measured: 40 commands of 2 MB output each (~40 MiB of codex events): a ${(log.length / MiB).toFixed(1)} MiB job log (cap ${MAX_OUTPUT_BYTES / MiB} MiB)`,
    );
  });
});
