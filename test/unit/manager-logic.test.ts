import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { V1ContainerState, V1Pod } from '@kubernetes/client-node';
import { expect } from 'chai';
import { decideAdmission } from '../../manager/admission.js';
import { classifyPod } from '../../manager/classify.js';
import { RUNNER_COMMAND, runnerEnvironment } from '../../common/runner-launch.js';
import { addQuantities, buildPod, podName, quantityBytes, secretName } from '../../manager/pod-spec.js';
import { PagewrightJob, type JobStatus } from '../../common/job-resource.js';
import { checksRefusal } from '../../manager/publisher.js';
import * as t from '../../manager/transitions.js';
import type { JobResult } from '../../common/schemas.js';
import { jobResult } from '../support/job-result.js';
import { defaultPodConfig } from '../support/pod-config.js';

let seq = 0;
function job(
  opts: { name?: string; site?: string; priority?: number; status?: JobStatus; created?: string; cancel?: boolean } = {},
): PagewrightJob {
  seq += 1;
  return PagewrightJob.parse({
    metadata: {
      name: opts.name ?? `job-${seq}`,
      namespace: 'ns',
      uid: `0000000${seq}-aaaa-bbbb-cccc-dddddddddddd`,
      resourceVersion: '1',
      generation: 1,
      creationTimestamp: opts.created ?? new Date(1_700_000_000_000 + seq * 1000).toISOString(),
    },
    spec: { siteId: opts.site ?? `site-${seq}`, prompt: 'edit', priority: opts.priority ?? 0, cancel: opts.cancel ?? false },
    status: opts.status ?? {},
  });
}

describe('admission', () => {
  const decide = (jobs: PagewrightJob[], maxConcurrent: number, inFlight = new Map<string, string>()) =>
    decideAdmission({ jobs, maxConcurrent, inFlight, now: Date.now() });

  it('admits by priority, then age, up to the free slots', () => {
    const low = job({ priority: 0 });
    const high = job({ priority: 5 });
    const older = job({ priority: 0, created: '2020-01-01T00:00:00Z' });
    const d = decide([low, high, older], 2);
    expect(d.admit).to.deep.equal([`ns/${high.metadata.name}`, `ns/${older.metadata.name}`]);
    expect(d.waiting.get(`ns/${low.metadata.name}`)).to.equal('capacity');
  });

  it('never admits a second job of a site that has one running or in flight', () => {
    const running = job({ site: 'a', status: { phase: 'Running', attempt: 1 } });
    const sameSite = job({ site: 'a', priority: 100 });
    const other = job({ site: 'b' });
    let d = decide([running, sameSite, other], 10);
    expect(d.admit).to.deep.equal([`ns/${other.metadata.name}`]);
    expect(d.waiting.get(`ns/${sameSite.metadata.name}`)).to.equal('site-busy');
    // the cache has not seen an admission yet: the in-flight entry holds the site and a slot
    const x = job({ site: 'c' });
    const y = job({ site: 'c' });
    d = decide([x, y], 1, new Map([[`ns/${x.metadata.name}`, 'c']]));
    expect(d.admit).to.deep.equal([]);
  });

  it('admits only the best job per site in one decision, and skips backoff and cancelled jobs', () => {
    const a1 = job({ site: 'a', priority: 1 });
    const a2 = job({ site: 'a', priority: 2 });
    const backoff = job({
      site: 'b',
      status: { phase: 'Queued', attempt: 1, nextAttemptTime: new Date(Date.now() + 60_000).toISOString() },
    });
    const cancelled = job({ site: 'c', cancel: true });
    const d = decide([a1, a2, backoff, cancelled], 10);
    expect(d.admit).to.deep.equal([`ns/${a2.metadata.name}`]);
    expect(d.waiting.get(`ns/${backoff.metadata.name}`)).to.equal('backoff');
    expect(d.waiting.has(`ns/${cancelled.metadata.name}`)).to.equal(false);
  });
});

describe('pod classification', () => {
  const opts = {
    get now() {
      return Date.now();
    },
    imagePullTimeoutMs: 60_000,
  };
  const pod = (status: V1Pod['status'], created = new Date()): V1Pod => ({
    metadata: { creationTimestamp: created },
    spec: { containers: [{ name: 'runner', image: 'x' }] },
    status,
  });
  /** A pod whose one container is in `state`. */
  const withContainer = (phase: string, state: V1ContainerState): V1Pod['status'] => ({
    phase,
    containerStatuses: [{ name: 'r', image: 'x', imageID: '', ready: false, restartCount: 0, state }],
  });

  it('reads OOMKilled, DeadlineExceeded, Evicted and exit codes', () => {
    expect(classifyPod(pod(withContainer('Failed', { terminated: { exitCode: 137, reason: 'OOMKilled' } })), opts)).to.include({
      reason: 'OOMKilled',
    });
    expect(classifyPod(pod({ phase: 'Failed', reason: 'DeadlineExceeded' }), opts)).to.include({ reason: 'DeadlineExceeded' });
    expect(classifyPod(pod({ phase: 'Failed', reason: 'Evicted' }), opts)).to.include({ reason: 'Evicted' });
    const crashed = classifyPod(pod(withContainer('Failed', { terminated: { exitCode: 3, reason: 'Error' } })), opts);
    expect(crashed).to.deep.include({ state: 'failed', reason: 'RunnerFailed' });
    expect((crashed as { message: string }).message).to.contain('code 3');
    expect(classifyPod(pod({ phase: 'Succeeded' }), opts)).to.deep.equal({ state: 'succeeded' });
    // an OOM kill of another process in the container: the runner itself exited 0
    expect(classifyPod(pod(withContainer('Succeeded', { terminated: { exitCode: 0, reason: 'OOMKilled' } })), opts)).to.deep.equal({
      state: 'succeeded',
    });
    expect(classifyPod(pod({ phase: 'Running' }), opts)).to.deep.equal({ state: 'running' });
  });

  it('fails an image pull only after the timeout', () => {
    const waiting = withContainer('Pending', { waiting: { reason: 'ImagePullBackOff' } });
    expect(classifyPod(pod(waiting), opts)).to.deep.equal({ state: 'pending' });
    expect(classifyPod(pod(waiting, new Date(Date.now() - 120_000)), opts)).to.include({ reason: 'ImagePullFailed' });
  });
});

describe('status transitions', () => {
  const result = (attempt: number, status: 'completed' | 'failed' = 'completed'): JobResult =>
    jobResult('x', attempt, {
      status,
      reason: status === 'failed' ? 'CodexFailed' : null,
      error: status === 'failed' ? 'boom' : null,
      base_version: 'a'.repeat(64),
      output_version: 'b'.repeat(64),
      phase_durations_ms: { executing_codex: 12.4 },
    });

  it('records a result once, only for the current attempt', () => {
    const j = job({ status: { phase: 'Running', attempt: 2 } });
    expect(t.resultReported(result(1))(j)).to.equal(null);
    const next = t.resultReported(result(2))(j)!;
    expect(next).to.include({ reportedAttempt: 2, runnerPhase: 'completed', filesChanged: 1, outputVersion: 'b'.repeat(64) });
    expect(next.phaseDurationsMs).to.deep.equal({ executing_codex: 12 });
    const after = PagewrightJob.parse({ ...j, status: next });
    expect(t.resultOutcome(after, 2)).to.equal('duplicate');
    expect(t.resultReported(result(2))(after)).to.equal(null);
  });

  it("writes the result's diff summary into status.diffSummary, and drops an earlier attempt's", () => {
    const diffSummary = { filesAdded: 1, filesModified: 2, filesDeleted: 0, linesAdded: 7, linesRemoved: 3, truncated: true };
    const j = job({ status: { phase: 'Running', attempt: 2 } });
    expect(t.resultReported({ ...result(2), diff_summary: diffSummary })(j)!.diffSummary).to.deep.equal(diffSummary);
    const earlier = job({ status: { phase: 'Running', attempt: 2, diffSummary: { ...diffSummary, truncated: false } } });
    expect(t.resultReported(result(2, 'failed'))(earlier)).not.to.have.property('diffSummary');
  });

  it("writes the result's checks and turns, a ChecksPassed condition, and drops an earlier attempt's", () => {
    const finding = { path: 'index.html', line: 3, code: 'broken-link', message: 'a href "x.html" does not resolve', introduced: true };
    const failedCheck = { name: 'links' as const, passed: false, introduced: 1, preexisting: 2, findings: [finding] };
    const j = job({ status: { phase: 'Running', attempt: 2 } });
    const next = t.resultReported({ ...result(2), checks: [failedCheck], turns: 2 })(j)!;
    expect(next).to.deep.include({ checks: [failedCheck], turns: 2 });
    const c = next.conditions?.find((x) => x.type === 'ChecksPassed');
    expect(c).to.include({ status: 'False', reason: 'ChecksFailed' });
    expect(c?.message).to.contain('links: 1 introduced').and.contain('index.html:3');
    const passed = t.resultReported({ ...result(2), checks: [{ ...failedCheck, passed: true, introduced: 0, findings: [] }] })(j)!;
    expect(passed.conditions?.find((x) => x.type === 'ChecksPassed')).to.include({ status: 'True', reason: 'ChecksPassed' });
    // a later attempt without checks keeps none of an earlier one's
    const earlier = job({ status: { phase: 'Running', attempt: 3, checks: [failedCheck], turns: 2, conditions: next.conditions } });
    const later = t.resultReported(result(3))(earlier)!;
    expect(later).not.to.have.property('checks');
    expect(later).not.to.have.property('turns');
    expect(later.conditions?.map((x) => x.type)).not.to.include('ChecksPassed');
  });

  it('refuses to publish an output whose checks failed unless the job or the site says to publish anyway', () => {
    const failedChecks = job({
      status: { phase: 'Succeeded', conditions: [{ type: 'ChecksPassed', status: 'False', message: 'links: 1 introduced' }] },
    });
    expect(checksRefusal(failedChecks, false)).to.deep.include({ reason: 'ChecksFailed' });
    expect(checksRefusal(failedChecks, false)?.message).to.contain('links: 1 introduced').and.contain('spec.publishAnyway');
    expect(checksRefusal(failedChecks, true)).to.equal(null);
    expect(checksRefusal(PagewrightJob.parse({ ...failedChecks, spec: { ...failedChecks.spec, publishAnyway: true } }), false)).to.equal(
      null,
    );
    expect(checksRefusal(job({ status: { phase: 'Succeeded', conditions: [{ type: 'ChecksPassed', status: 'True' }] } }), false)).to.equal(
      null,
    );
    expect(checksRefusal(job({ status: { phase: 'Succeeded' } }), false)).to.equal(null); // no checks ran
  });

  it('sets the conditions kubectl wait understands', () => {
    const j = job({ status: { phase: 'Running', attempt: 1, reportedAttempt: 1, runnerPhase: 'completed', summary: 's' } });
    const done = t.succeeded(1, undefined)(j)!;
    expect(done.phase).to.equal('Succeeded');
    expect(done.completionTime).to.be.a('string');
    expect(done.conditions?.find((c) => c.type === 'Complete')).to.include({ status: 'True' });
    expect(done.conditions?.find((c) => c.type === 'Running')).to.include({ status: 'False' });
    const terminal = PagewrightJob.parse({ ...j, status: done });
    expect(t.failed(1, 'Internal', 'late')(terminal)).to.equal(null); // never leaves a terminal phase
    expect(t.cancelled('x')(terminal)).to.equal(null);
  });

  it('retries with exponential backoff, capped', () => {
    expect([1, 2, 3, 4].map((n) => t.retryDelayMs(n, 10, 60))).to.deep.equal([10_000, 20_000, 40_000, 60_000]);
    const j = job({ status: { phase: 'Running', attempt: 1 } });
    const next = t.retrying(1, 'OOMKilled', 'too big', 10_000)(j)!;
    expect(next.phase).to.equal('Queued');
    expect(Date.parse(next.nextAttemptTime!)).to.be.greaterThan(Date.now() + 9000);
  });
});

describe('runner pod spec', () => {
  const cfg = defaultPodConfig({ runnerImage: 'pagewright-runner:1', runnerEnv: { PAGEWRIGHT_KILL_GRACE_MS: '1000' } });

  it('is hardened, owned, labelled and carries no secret in plain env', () => {
    const j = job({ name: 'a'.repeat(120) });
    const pod = buildPod(j, 3, cfg);
    expect(pod.metadata?.name).to.equal(podName(j, 3));
    expect(pod.metadata!.name!.length).to.be.at.most(63);
    expect(pod.metadata?.ownerReferences?.[0]).to.include({ uid: j.metadata.uid, controller: true });
    expect(pod.spec).to.include({ restartPolicy: 'Never', automountServiceAccountToken: false, activeDeadlineSeconds: 1800 + 120 });
    const c = pod.spec!.containers[0]!;
    expect(c.securityContext).to.deep.include({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true });
    expect(c.securityContext?.capabilities?.drop).to.deep.equal(['ALL']);
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));
    expect(env.PAGEWRIGHT_JOB_TOKEN?.value).to.equal(undefined);
    expect(env.PAGEWRIGHT_JOB_TOKEN?.valueFrom?.secretKeyRef).to.be.an('object');
    expect(env.PAGEWRIGHT_LLM_KEY?.valueFrom?.secretKeyRef).to.be.an('object');
    expect(JSON.parse(env.PAGEWRIGHT_JOB!.value!)).to.include({ job_id: j.metadata.uid, attempt: 3, model: 'gpt-5.5' });
    expect(env.PAGEWRIGHT_KILL_GRACE_MS?.value).to.equal('1000');
  });

  it("gives a follow-up's runner the output and thread it follows, as its base, from status.followUp", () => {
    const followUp = {
      job: 'first',
      jobId: 'uid-first',
      version: 'b'.repeat(64),
      threadId: '01a237ba-f138-71e2-ad01-4742ce07a21c',
      lineage: ['a'.repeat(64)],
    };
    const j = job({ status: { phase: 'Scheduled', attempt: 1, followUp } });
    const env = Object.fromEntries(
      (buildPod(j, 1, cfg).spec!.containers.find((c) => c.name === 'runner')!.env ?? []).map((e) => [e.name, e]),
    );
    expect(JSON.parse(env.PAGEWRIGHT_JOB!.value!)).to.deep.include({
      base_version: followUp.version,
      follow_up: { job_id: 'uid-first', version: followUp.version, thread_id: followUp.threadId },
    });
    // and without one, none
    const plain = buildPod(job({}), 1, cfg).spec!.containers.find((c) => c.name === 'runner')!.env!;
    expect(JSON.parse(plain.find((e) => e.name === 'PAGEWRIGHT_JOB')!.value!)).not.to.have.property('follow_up');
  });

  it('fixes a follow-up source with its first attempt, and keeps it for the next', () => {
    const source = {
      job: 'first',
      jobId: 'uid-first',
      version: 'b'.repeat(64),
      threadId: '01a237ba-f138-71e2-ad01-4742ce07a21c',
      lineage: [],
    };
    const first = t.scheduled(1, 'pod-1', new Date(), source)(job({ status: { phase: 'Queued', attempt: 0 } }))!;
    expect(first.followUp).to.deep.equal(source);
    const other = { ...source, version: 'c'.repeat(64) };
    const retry = t.scheduled(2, 'pod-2', new Date(), other)(job({ status: { ...first, phase: 'Queued', attempt: 1 } }))!;
    expect(retry.followUp).to.deep.equal(source);
  });

  it("starts the runner by the launch contract (common/runner-launch.ts), its credentials from the attempt's Secret", () => {
    const j = job({});
    const runner = buildPod(j, 2, cfg).spec!.containers.find((c) => c.name === 'runner')!;
    expect(runner.command).to.deep.equal([...RUNNER_COMMAND]);
    // the builder's variables, in its order, for a launch with every field a pod sets: a
    // hand-written environment would differ in a name or in the order
    const contract = runnerEnvironment({
      job: {} as never,
      port: 0,
      workDir: '',
      privateDir: '',
      agentUrl: '',
      llmUrl: '',
      managerUrl: '',
      storageUrl: '',
      model: '',
      codexBinary: '',
      instructionsPath: '',
      extra: { HOME: '', ...cfg.runnerEnv },
    });
    expect((runner.env ?? []).map((e) => e.name)).to.deep.equal(contract.map((e) => e.name));
    for (const e of contract) {
      if (!('secret' in e)) continue;
      const found = runner.env!.find((v) => v.name === e.name)!;
      expect(found.valueFrom?.secretKeyRef, e.name).to.deep.equal({ name: secretName(j, 2), key: e.secret });
    }
  });

  it('sizes every volume the agent can write as a tmpfs, and counts it in the memory limit of each container that writes it', () => {
    const pod = buildPod(job({}), 1, defaultPodConfig());
    const spec = pod.spec!;
    const volume = (name: string) => spec.volumes!.find((v) => v.name === name)?.emptyDir;
    const agent = spec.initContainers!.find((c) => c.name === 'agent')!;
    const runner = spec.containers.find((c) => c.name === 'runner')!;
    // whatever the agent mounts is memory-backed and sized: a write past it fails at once
    const agentVolumes = agent.volumeMounts!.map((m) => ({ name: m.name, ...volume(m.name) }));
    expect(agentVolumes).to.deep.equal([
      { name: 'work', medium: 'Memory', sizeLimit: '1Gi' },
      { name: 'agent-tmp', medium: 'Memory', sizeLimit: '256Mi' },
    ]);
    // the runner's own volumes stay on disk (the agent does not mount them)
    expect([volume('runner-private'), volume('runner-tmp')]).to.deep.equal([{ sizeLimit: '1Gi' }, { sizeLimit: '256Mi' }]);
    // limits: codex's 2Gi + the work dir + its /tmp; the runner's 512Mi + the work dir (it unpacks the site there)
    expect(agent.resources?.limits).to.deep.equal({ cpu: '2', memory: '3328Mi' });
    expect(agent.resources?.requests).to.deep.equal({ cpu: '250m', memory: '512Mi' });
    expect(runner.resources?.limits).to.deep.equal({ cpu: '1', memory: '1536Mi' });
    // and they follow the settings
    const big = buildPod(job({}), 1, defaultPodConfig({ runnerWorkSizeLimit: '3Gi', runnerMemoryLimit: '1536Mi' })).spec!;
    expect(big.volumes!.find((v) => v.name === 'work')?.emptyDir).to.deep.equal({ medium: 'Memory', sizeLimit: '3Gi' });
    expect(big.initContainers![0]!.resources?.limits?.memory).to.equal('4864Mi');
    expect(big.containers[0]!.resources?.limits?.memory).to.equal('3584Mi');
  });

  it('starts the agent under its init: RLIMIT_FSIZE from the settings, its exit status, SIGTERM passed on', async () => {
    const agent = buildPod(job({}), 1, defaultPodConfig({ runnerMaxFileSize: '64Mi' })).spec!.initContainers![0]!;
    const [shell, flag, script, name, ...rest] = agent.command!;
    expect([shell, flag, name]).to.deep.equal(['/bin/bash', '-c', 'agent-init']);
    expect(rest).to.deep.equal(['node', '/app/dist/runner/bundle.mjs', 'agent']);
    const kib = agent.env!.find((e) => e.name === 'PAGEWRIGHT_AGENT_MAX_FILE_KIB')?.value;
    expect(kib).to.equal(String(64 * 1024));
    // the same init, here, over a stand-in for the agent server
    const run = (child: string) => {
      const init = spawn('bash', ['-c', script!, name!, 'bash', '-c', child], {
        env: { PATH: process.env.PATH, PAGEWRIGHT_AGENT_MAX_FILE_KIB: kib },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      init.stdout.on('data', (c: Buffer) => (out += c.toString()));
      return { init, out: () => out, exited: once(init, 'exit') as Promise<[number | null]> };
    };
    const plain = run(
      'echo "fsize=$(ulimit -f) hard=$(ulimit -Hf) init=$PAGEWRIGHT_AGENT_INIT"; ulimit -f unlimited 2>/dev/null || echo cannot-raise; exit 7',
    );
    const [code] = await plain.exited;
    expect(code).to.equal(7);
    expect(plain.out()).to.contain(`fsize=${kib} hard=${kib} init=pod`);
    if (process.getuid?.() !== 0) expect(plain.out()).to.contain('cannot-raise');
    const term = run("trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done");
    for (let i = 0; i < 200 && !term.out().includes('ready'); i++) await new Promise((r) => setTimeout(r, 10));
    term.init.kill('SIGTERM');
    const [termCode] = await term.exited;
    expect([termCode, term.out()]).to.deep.equal([0, 'ready\ngot-term\n']);
  });
});

describe('quantities', () => {
  it('reads the quantities the config accepts as bytes, rounded up', () => {
    expect(['512Mi', '1Gi', '1.5Gi', '2G', '500M', '1k', '10', '1500m'].map(quantityBytes)).to.deep.equal([
      512 * 2 ** 20,
      2 ** 30,
      1.5 * 2 ** 30,
      2e9,
      5e8,
      1000,
      10,
      2,
    ]);
    expect(() => quantityBytes('1Xi')).to.throw(/not a Kubernetes quantity/);
  });

  it('adds them, in Mi when whole', () => {
    expect(addQuantities('2Gi', '1Gi', '256Mi')).to.equal('3328Mi');
    expect(addQuantities('1G', '1')).to.equal('1000000001');
  });
});
