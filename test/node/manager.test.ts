/**
 * The manager on the real control plane: schema validation by the apiserver, cancel and delete
 * of a running job, failure classification and retries, deadlines, publish compare-and-swap, and
 * the file modes of an output made by the agent's uid.
 * Runner pods are real containers on the real node (containerd + kubelet); storage and the Codex
 * CLI are real; only the model is scripted.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { expect } from 'chai';
import { Parser } from 'tar';
import { verifyPreviewLink } from '../../common/preview-link.js';
import { type ManagerEnv, EXAMPLE_SITE_ID, randomName, startManagerEnv } from '../support/manager-env.js';
import { eventsAbout } from '../support/control-plane.js';
import { waitFor } from '../support/processes.js';
import { REPO_ROOT } from '../support/sites.js';
import { forgeTarGz, forgeTarGzBuffer } from '../support/tar-forge.js';
import type { PagewrightJob } from '../../common/job-resource.js';

/** path -> mode (octal) of every entry of a tar.gz. */
async function tarModes(archive: Buffer): Promise<Record<string, string>> {
  const modes: Record<string, string> = {};
  const parser = new Parser({
    onReadEntry: (e) => {
      modes[e.path.replace(/\/$/, '')] = ((e.mode ?? 0) & 0o7777).toString(8);
      e.resume();
    },
  });
  await pipeline(Readable.from([archive]), parser);
  return modes;
}

const finished = (j: PagewrightJob) => ['Succeeded', 'Failed', 'Cancelled'].includes(j.status.phase ?? '');

const PREVIEW_BASE_URL = 'https://previews.example.test';
const LINK_SECRET = 'a-preview-link-secret-of-32-chars-at-least';

describe('manager on a real control plane', function () {
  this.timeout(180_000);
  let env: ManagerEnv;

  before(async () => {
    env = await startManagerEnv('mgr');
    // a short slack past timeoutSeconds keeps the deadline test near a minute
    // and an Ingress for previews: Succeeded jobs get a signed review link
    await env.startManager({
      env: {
        PAGEWRIGHT_POD_DEADLINE_SLACK_SECONDS: '3',
        PAGEWRIGHT_PREVIEW_BASE_URL: PREVIEW_BASE_URL,
        PAGEWRIGHT_PREVIEW_LINK_SECRET: LINK_SECRET,
      },
    });
  });
  after(async () => env?.stop());

  async function expectNothingLeft(job: PagewrightJob): Promise<void> {
    const pods = await env.jobPods(job.metadata.uid);
    expect(
      pods.map((p) => p.metadata?.name),
      'pods left',
    ).to.deep.equal([]);
    const secrets = await env.core.listNamespacedSecret({
      namespace: env.namespace,
      labelSelector: `pagewright.dev/job=${job.metadata.uid}`,
    });
    expect(
      secrets.items.map((s) => s.metadata?.name),
      'secrets left',
    ).to.deep.equal([]);
  }

  it('has a CRD that kubectl explains and that rejects invalid jobs naming the field', async () => {
    const explain = await env.cp.kubectl(['explain', 'pagewrightjob.spec']);
    for (const field of [
      'siteId',
      'prompt',
      'baseVersion',
      'model',
      'timeoutSeconds',
      'retries',
      'priority',
      'publish',
      'cancel',
      'ttlSecondsAfterFinished',
    ]) {
      expect(explain.stdout, field).to.match(new RegExp(`^\\s+${field}\\s+<`, 'm'));
    }
    const cases: Array<[string, string, RegExp]> = [
      ['missing prompt', 'siteId: ok-site', /spec\.prompt: Required value/],
      ['bad siteId', 'siteId: Not_A_Label\n  prompt: x', /spec\.siteId: Invalid value: "Not_A_Label"/],
      [
        'timeout too small',
        'siteId: ok-site\n  prompt: x\n  timeoutSeconds: 10',
        /spec\.timeoutSeconds: Invalid value: 10: spec\.timeoutSeconds in body should be greater than or equal to 60/,
      ],
      ['retries too many', 'siteId: ok-site\n  prompt: x\n  retries: 11', /spec\.retries: Invalid value: 11/],
    ];
    for (const [what, spec, message] of cases) {
      const manifest = `apiVersion: pagewright.dev/v1alpha1\nkind: PagewrightJob\nmetadata:\n  name: invalid\nspec:\n  ${spec}\n`;
      const res = await env.cp.kubectl(['-n', env.namespace, 'apply', '-f', '-'], { input: manifest, allowFailure: true });
      expect(res.code, what).to.not.equal(0);
      expect(res.stderr, what).to.match(message);
    }
    const none = await env.cp.kubectl(['-n', env.namespace, 'get', 'pwj', '-o', 'name']);
    expect(none.stdout.trim()).to.equal('');
  });

  it('cancels a job while codex runs: Cancelled within 20 s, no pod, Secret or container left', async () => {
    const name = randomName('cancel');
    await env.createJob(name, { siteId: 'site-a', prompt: 'MODEL:hang until cancelled' });
    const running = await env.waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex', 60_000);
    const pod = (await env.jobPods(running.metadata.uid))[0]!;
    expect((await env.runningContainers(pod.metadata!.uid!)).map((c) => c.name)).to.include('runner');

    const start = Date.now();
    await env.cp.kubectl(['-n', env.namespace, 'patch', 'pwj', name, '--type=merge', '-p', '{"spec":{"cancel":true}}']);
    const cancelled = await env.waitForJob(name, 'Cancelled', (j) => j.status.phase === 'Cancelled', 20_000);
    expect(Date.now() - start).to.be.below(20_000);
    expect(cancelled.status).to.include({ reason: 'Cancelled' });
    expect(cancelled.status.conditions?.find((c) => c.type === 'Failed')).to.include({ status: 'True', reason: 'Cancelled' });
    await expectNothingLeft(cancelled);
    expect(await env.runningContainers(pod.metadata!.uid!)).to.deep.equal([]);
  });

  it('deletes a running job: the resource goes, and its pod, Secret and containers with it', async () => {
    const name = randomName('delete');
    await env.createJob(name, { siteId: 'site-b', prompt: 'MODEL:hang until deleted' });
    const running = await env.waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex', 60_000);
    expect(running.metadata.finalizers).to.include('pagewright.dev/cleanup');
    const pod = (await env.jobPods(running.metadata.uid))[0]!;

    const start = Date.now();
    await env.cp.kubectl(['-n', env.namespace, 'delete', 'pwj', name, '--wait=true', '--timeout=20s']);
    expect(Date.now() - start).to.be.below(20_000);
    const gone = await env.cp.kubectl(['-n', env.namespace, 'get', 'pwj', name], { allowFailure: true });
    expect(gone.stderr).to.match(/NotFound/);
    await expectNothingLeft(running);
    expect(await env.runningContainers(pod.metadata!.uid!)).to.deep.equal([]);
  });

  for (const [fault, reason] of [
    ['crash', 'RunnerFailed'],
    ['oom', 'OOMKilled'],
  ] as const) {
    it(`retries a runner that ${fault === 'crash' ? 'exits non-zero without calling back' : 'is OOMKilled'}, with backoff, then fails with ${reason}`, async () => {
      const name = randomName(fault);
      await env.createJob(name, { siteId: `site-${fault}`, prompt: `FAULT:${fault}`, retries: 2 });
      const failed = await env.waitForJob(name, 'Failed', finished, 90_000);
      expect(failed.status, await env.diagnostics()).to.include({ phase: 'Failed', reason, attempt: 3 });
      const pods = await env.jobPods(failed.metadata.uid);
      expect(pods.map((p) => p.metadata?.labels?.['pagewright.dev/attempt']).sort()).to.deep.equal(['1', '2', '3']);
      // backoff: attempt n+1 starts no sooner than RETRY_BASE_SECONDS * 2^(n-1) after attempt n ended
      const started = (attempt: number) =>
        Date.parse(
          String(pods.find((p) => p.metadata?.labels?.['pagewright.dev/attempt'] === String(attempt))!.metadata!.creationTimestamp),
        );
      const ended = (attempt: number) => {
        const term = pods.find((p) => p.metadata?.labels?.['pagewright.dev/attempt'] === String(attempt))!.status?.containerStatuses?.[0]
          ?.state?.terminated;
        return Date.parse(String(term?.finishedAt));
      };
      expect(started(2) - ended(1)).to.be.at.least(900);
      expect(started(3) - ended(2)).to.be.at.least(1900);
      const events = await eventsAbout((args) => env.cp.kubectl(args), env.namespace, name, 'reason');
      expect(events.split(' ').filter((r) => r === 'Retrying')).to.have.length(2);
    });
  }

  it('fails a pod that runs past activeDeadlineSeconds with DeadlineExceeded, without retrying', async function () {
    this.timeout(150_000);
    const name = randomName('deadline');
    await env.createJob(name, { siteId: 'site-deadline', prompt: 'FAULT:hang', timeoutSeconds: 60, retries: 2 });
    const failed = await env.waitForJob(name, 'Failed', finished, 120_000);
    expect(failed.status).to.include({ phase: 'Failed', reason: 'DeadlineExceeded', attempt: 1 });
    const pod = (await env.jobPods(failed.metadata.uid))[0]!;
    expect(pod.spec?.activeDeadlineSeconds).to.equal(63);
    expect(await env.runningContainers(pod.metadata!.uid!)).to.deep.equal([]);
  });

  it("an agent command over the pod's memory limit is killed alone by the kernel, and the job goes on to succeed", async () => {
    const name = randomName('memory');
    await env.createJob(name, { siteId: 'site-memory', prompt: 'MODEL:memory-hog, then the demo edit', retries: 0 });
    const done = await env.waitForJob(name, 'finished', finished, 120_000);
    expect(done.status, await env.diagnostics()).to.include({ phase: 'Succeeded', attempt: 1, filesChanged: 1 });
    // the hog died of SIGKILL (bash reports 137) while the runner and codex lived on
    const hog = env.model.requests.map((r) => JSON.stringify(r.body)).find((b) => b.includes('hog exit:'));
    expect(hog, `the model saw the command's output: ${/.{0,300}hog exit:.{0,40}/.exec(hog ?? '')?.[0]}`).to.match(/hog exit: 137/);
    // the runner exits after its exit delay: then its container ended well, never restarted
    const pod = await waitFor(
      'the runner pod to end',
      async () => (await env.jobPods(done.metadata.uid)).find((p) => ['Succeeded', 'Failed'].includes(p.status?.phase ?? '')),
      30_000,
      200,
    );
    // the hog ran in the agent container: the runner's container never felt it, and the agent's
    // own process (the agent server) lived on: the sidecar was never restarted
    const runner = pod.status?.containerStatuses?.[0];
    expect(runner?.state?.terminated).to.include({ exitCode: 0, reason: 'Completed' });
    expect(runner?.restartCount).to.equal(0);
    const agent = pod.status?.initContainerStatuses?.find((c) => c.name === 'agent');
    expect(agent?.restartCount, JSON.stringify(agent)).to.equal(0);
    expect(pod.status?.phase).to.equal('Succeeded');
  });

  it('a runner pod deleted out of band: PodLost, and the next attempt succeeds', async () => {
    const name = randomName('podlost');
    await env.createJob(name, { siteId: 'site-a', prompt: 'MODEL:gate then the demo edit', retries: 1 });
    const running = await env.waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex', 60_000);
    await env.cp.kubectl(['-n', env.namespace, 'delete', 'pod', running.status.podName!, '--wait=false']);
    const retried = await env.waitForJob(name, 'a second attempt', (j) => (j.status.attempt ?? 0) >= 2, 60_000);
    env.modelGate.open();
    try {
      const done = await env.waitForJob(name, 'finished', finished, 90_000);
      expect(done.status, await env.diagnostics()).to.include({ phase: 'Succeeded', attempt: 2 });
      const events = await eventsAbout((args) => env.cp.kubectl(args), env.namespace, name, 'message');
      expect(events).to.match(/attempt 1 failed \(PodLost\)/);
      expect(retried.status.attempt).to.equal(2);
    } finally {
      env.modelGate.close();
    }
  });

  it('publishes with compare-and-swap: of two jobs from the same base, exactly one wins', async () => {
    const site = await env.storage.admin.getSite(EXAMPLE_SITE_ID);
    const names = [randomName('publish'), randomName('publish')];
    for (const [i, name] of names.entries()) {
      await env.createJob(name, { siteId: EXAMPLE_SITE_ID, prompt: `Publish attempt ${i}`, baseVersion: site.version, publish: true });
    }
    const jobs = await Promise.all(names.map((n) => env.waitForJob(n, 'finished', finished, 90_000)));
    const won = jobs.filter((j) => j.status.phase === 'Succeeded');
    const lost = jobs.filter((j) => j.status.phase === 'Failed');
    expect(won, JSON.stringify(jobs.map((j) => j.status))).to.have.length(1);
    expect(lost).to.have.length(1);
    expect(lost[0]!.status.reason).to.equal('PublishConflict');
    expect(won[0]!.status.publishedVersion).to.equal(won[0]!.status.outputVersion);
    const after = await env.storage.admin.getSite(EXAMPLE_SITE_ID);
    expect(after.version).to.equal(won[0]!.status.outputVersion);
    expect(after.history[0]?.job_id).to.equal(won[0]!.metadata.uid);
    // the winner's status links to its review page, signed for that job, expiring in a day
    const link = won[0]!.status.reviewLink;
    const token = new RegExp(`^${PREVIEW_BASE_URL}/p/([\\w.-]+)/review$`).exec(link?.url ?? '')?.[1];
    expect(token, JSON.stringify(link)).to.be.a('string');
    const granted = verifyPreviewLink(token!, LINK_SECRET);
    expect(granted).to.deep.include({ kind: 'job', namespace: env.namespace, name: won[0]!.metadata.name });
    expect(granted.expiresAt.toISOString()).to.equal(link!.expiresAt);
    expect(granted.expiresAt.getTime() - Date.now()).to.be.within(23 * 3600_000, 24 * 3600_000);
    expect(lost[0]!.status.reviewLink).to.equal(undefined);
  });

  it("a job's output carries the input's file modes where the agent (another uid in the pod) left them, and ordinary ones for what it made", async () => {
    const scratch = await mkdtemp(join(tmpdir(), 'pw-modes-'));
    const input = join(scratch, 'input.tar.gz');
    await forgeTarGz(input, [
      { path: 'index.html', content: '<h1>Welcome</h1>\n', mode: 0o664 },
      { path: 'menu.html', content: '<p>bread</p>\n', mode: 0o600 },
      { path: 'robots.txt', content: 'User-agent: *\n', mode: 0o444 },
      { path: 'deploy.sh', content: '#!/bin/sh\n', mode: 0o750 },
      { path: 'assets/', type: 'dir', mode: 0o750 },
      { path: 'assets/logo.svg', content: '<svg/>', mode: 0o640 },
      { path: '.codex/', type: 'dir', mode: 0o775 },
      { path: '.codex/instructions.md', content: 'site rules\n', mode: 0o664 },
    ]);
    const inputBytes = await readFile(input);
    await rm(scratch, { recursive: true, force: true });
    await env.storage.admin.putSiteArtifact('site-modes', inputBytes);
    // the agent's uid owns nothing of the input: it edits through the group (sed -i makes a new
    // file of its own), and it may chmod only what it made
    env.scripts.set('modes', (ctx) =>
      ctx.round === 0
        ? {
            kind: 'tools',
            calls: [
              {
                type: 'shell',
                cmd: "sed -i 's/Welcome/Welcome back/' index.html && printf 'n\\n' > notes.txt && mkdir tools && printf '#!/bin/sh\\n' > tools/build.sh && chmod 755 tools/build.sh && echo agent-done",
              },
            ],
          }
        : { kind: 'message', text: JSON.stringify({ summary: 'Edited the welcome.', files_changed: ['index.html'] }) },
    );
    const name = randomName('modes');
    await env.createJob(name, { siteId: 'site-modes', prompt: 'SCRIPT:modes' });
    const job = await env.waitForJob(name, 'finished', finished, 90_000);
    expect(job.status.phase, await env.diagnostics()).to.equal('Succeeded');
    expect(job.status.files).to.deep.equal(['index.html', 'notes.txt', 'tools/build.sh']);
    // the diff the runner stored, and its numbers in the status: the output's modes, as git shows them
    expect(job.status.diffSummary).to.deep.equal({
      filesAdded: 2,
      filesModified: 1,
      filesDeleted: 0,
      linesAdded: 3,
      linesRemoved: 1,
      truncated: false,
    });
    const patch = await (await env.storage.admin.getJobObject(job.metadata.uid, 'diff.patch')).body.text();
    expect(patch).to.match(/^diff --git a\/index\.html b\/index\.html\nindex [0-9a-f]{7}\.\.[0-9a-f]{7} 100644\n/);
    expect(patch).to.contain('-<h1>Welcome</h1>\n+<h1>Welcome back</h1>\n');
    expect(patch).to.contain('diff --git a/notes.txt b/notes.txt\nnew file mode 100644\n');
    expect(patch).to.contain('diff --git a/tools/build.sh b/tools/build.sh\nnew file mode 100755\n');
    expect(patch).not.to.contain('.codex');
    const output = Buffer.concat(await (await env.storage.admin.getJobObject(job.metadata.uid, 'output.tar.gz')).body.toArray());
    const [before, after] = await Promise.all([tarModes(inputBytes), tarModes(output)]);
    for (const path of [
      'index.html',
      'menu.html',
      'robots.txt',
      'deploy.sh',
      'assets',
      'assets/logo.svg',
      '.codex',
      '.codex/instructions.md',
    ])
      expect(after[path], path).to.equal(before[path]);
    expect({ notes: after['notes.txt'], tools: after.tools, build: after['tools/build.sh'] }).to.deep.equal({
      notes: '644',
      tools: '755',
      build: '755',
    });
  });

  it('refuses an output that changes a denied path: PathNotAllowed naming it, the agent told the rule, nothing uploaded or published', async () => {
    const site = 'site-rules';
    const input = await forgeTarGzBuffer([
      { path: 'index.html', content: '<h1>Welcome</h1>\n' },
      { path: 'admin/users.html', content: '<p>staff only</p>\n' },
    ]);
    const before = await env.storage.admin.putSiteArtifact(site, input);
    const siteObject = (spec: Record<string, unknown>, name = site) => ({
      group: 'pagewright.dev',
      version: 'v1alpha1',
      plural: 'pagewrightsites',
      namespace: env.namespace,
      body: { apiVersion: 'pagewright.dev/v1alpha1', kind: 'PagewrightSite', metadata: { name }, spec },
    });
    // a glob that does not parse is refused when the site is applied
    const bad = await env.custom
      .createNamespacedCustomObject(siteObject({ paths: { deny: ['[abc].html'] } }, 'site-bad-glob'))
      .catch((e: { code?: number }) => e);
    expect((bad as { code?: number }).code).to.equal(422);
    await env.custom.createNamespacedCustomObject(siteObject({ paths: { deny: ['admin/**'], maxFilesChanged: 10 } }));
    let told = false;
    env.scripts.set('rules', (ctx) => {
      told ||= JSON.stringify(ctx.request.body).includes('admin/**');
      return ctx.round === 0
        ? {
            kind: 'tools',
            calls: [
              { type: 'shell', cmd: "sed -i 's/Welcome/Hello/' index.html && echo '<p>me too</p>' >> admin/users.html && echo agent-done" },
            ],
          }
        : { kind: 'message', text: JSON.stringify({ summary: 'Edited two pages.', files_changed: ['index.html', 'admin/users.html'] }) };
    });
    const name = randomName('rules');
    await env.createJob(name, { siteId: site, prompt: 'SCRIPT:rules', publish: true });
    const job = await env.waitForJob(name, 'finished', finished, 90_000);
    expect([job.status.phase, job.status.reason], await env.diagnostics()).to.deep.equal(['Failed', 'PathNotAllowed']);
    expect(job.status.message).to.match(/"admin\/users\.html" \(modified\) matches the site's deny rules \(admin\/\*\*\)/);
    expect(told, "the rule was in the agent's instructions").to.equal(true);
    const output = await env.storage.admin.getJobObject(job.metadata.uid, 'output.tar.gz').catch((e: { code: string }) => e.code);
    expect(output, 'no output uploaded').to.equal('ObjectNotFound');
    expect((await env.storage.admin.getSite(site)).version, 'nothing published').to.equal(before.version);
  });

  it('checks the output: a broken link repaired in one turn and published; unrepaired, the publish refused ChecksFailed until publishAnyway', async () => {
    const DOC = '<!DOCTYPE html><html><head><title>Bakery</title></head><body>';
    const input = await forgeTarGzBuffer([
      { path: 'index.html', content: `${DOC}<h1>Welcome</h1><a href="menu.html">Menu</a></body></html>\n` },
      { path: 'menu.html', content: `${DOC}<p>bread</p><img src="gone.png"></body></html>\n` }, // already broken: reported only
    ]);
    const sites = { repaired: 'site-checks', refused: 'site-checks-norepair' };
    const before = await env.storage.admin.putSiteArtifact(sites.repaired, input);
    const refusedBase = await env.storage.admin.putSiteArtifact(sites.refused, input);
    for (const [name, spec] of [
      [sites.repaired, {}],
      [sites.refused, { checks: { repairTurns: 0 } }],
    ] as const)
      await env.custom.createNamespacedCustomObject({
        group: 'pagewright.dev',
        version: 'v1alpha1',
        plural: 'pagewrightsites',
        namespace: env.namespace,
        body: { apiVersion: 'pagewright.dev/v1alpha1', kind: 'PagewrightSite', metadata: { name }, spec },
      });
    // turn 1 links the menu under a wrong name; told so, the repair turn corrects it
    const repairs: string[] = [];
    env.scripts.set('checks', (ctx) => {
      if (/The site's checks ran on your edit and failed/.test(ctx.prompt)) {
        repairs.push(ctx.prompt);
        // the resumed thread: the first prompt and turn 1's command are in the conversation
        const seen = ctx.prompts.some((p) => p.includes('SCRIPT:checks')) && JSON.stringify(ctx.request.body).includes('menu-page.html');
        return ctx.toolOutputs.length === 1 && seen
          ? { kind: 'tools', calls: [{ type: 'shell', cmd: "sed -i 's/menu-page.html/menu.html/' index.html && echo fixed" }] }
          : { kind: 'message', text: JSON.stringify({ summary: 'Linked the menu twice.', files_changed: ['index.html'] }) };
      }
      return ctx.round === 0
        ? {
            kind: 'tools',
            calls: [{ type: 'shell', cmd: `sed -i 's|</h1>|</h1><a href="menu-page.html">Our menu</a>|' index.html && echo edited` }],
          }
        : { kind: 'message', text: JSON.stringify({ summary: 'Linked the menu twice.', files_changed: ['index.html'] }) };
    });

    const repaired = randomName('checks');
    await env.createJob(repaired, { siteId: sites.repaired, prompt: 'SCRIPT:checks Link the menu.', publish: true });
    const ok = await env.waitForJob(repaired, 'finished', finished, 120_000);
    expect([ok.status.phase, ok.status.turns], await env.diagnostics()).to.deep.equal(['Succeeded', 2]);
    expect(new Set(repairs).size, 'one repair prompt (its turn makes two model calls)').to.equal(1);
    expect(repairs[0]).to.contain('index.html:1').and.contain('"menu-page.html" does not resolve');
    expect(ok.status.conditions?.find((c) => c.type === 'ChecksPassed')).to.include({ status: 'True' });
    expect(ok.status.checks?.find((c) => c.name === 'links')).to.include({ passed: true, introduced: 0, preexisting: 1 });
    expect((await env.storage.admin.getSite(sites.repaired)).version)
      .to.equal(ok.status.publishedVersion)
      .and.not.equal(before.version);

    // no repair turn: the job succeeds with its failed checks shown, and nothing is published
    const refused = randomName('checks');
    await env.createJob(refused, { siteId: sites.refused, prompt: 'SCRIPT:checks Link the menu.' });
    const done = await env.waitForJob(refused, 'finished', finished, 120_000);
    expect([done.status.phase, done.status.turns], await env.diagnostics()).to.deep.equal(['Succeeded', 1]);
    const links = done.status.checks?.find((c) => c.name === 'links');
    expect(links).to.include({ passed: false, introduced: 1, preexisting: 1 });
    expect(links?.findings[0]).to.include({ path: 'index.html', line: 1, code: 'broken-link', introduced: true });
    expect(done.status.conditions?.find((c) => c.type === 'ChecksPassed')).to.include({ status: 'False', reason: 'ChecksFailed' });
    const table = await env.cp.kubectl(['-n', env.namespace, 'get', 'pwj', refused]);
    expect(table.stdout)
      .to.match(/CHECKS/)
      .and.match(/\sFalse\s/);
    // approval is refused for the checks...
    await env.cp.kubectl(['-n', env.namespace, 'patch', 'pwj', refused, '--type=merge', '-p', '{"spec":{"publish":true}}']);
    const approval = await env.waitForJob(
      refused,
      'approval refused',
      (j) => j.status.conditions?.some((c) => c.type === 'Published') ?? false,
    );
    expect(approval.status.conditions?.find((c) => c.type === 'Published')).to.include({ status: 'False', reason: 'ChecksFailed' });
    expect((await env.storage.admin.getSite(sites.refused)).version).to.equal(refusedBase.version);
    // ...until the job says to publish anyway
    await env.cp.kubectl(['-n', env.namespace, 'patch', 'pwj', refused, '--type=merge', '-p', '{"spec":{"publishAnyway":true}}']);
    const published = await env.waitForJob(refused, 'published anyway', (j) => j.status.publishedVersion !== undefined);
    expect((await env.storage.admin.getSite(sites.refused)).version).to.equal(published.status.publishedVersion);
  });

  it("runs the site's command in the agent container: a failing build refuses the publish, a fork bomb ends as a failed check", async () => {
    const input = await forgeTarGzBuffer([{ path: 'index.html', content: '<!DOCTYPE html><title>x</title><h1>Welcome</h1>\n' }]);
    const cases = [
      { site: 'site-build', run: 'echo building; cat missing-file.txt', code: 'command-failed', text: 'missing-file.txt' },
      // bash: the agent container's sh is dash, whose functions do not recurse into pipes as fast
      { site: 'site-forkbomb', run: "bash -c ':(){ :|:& };:'; sleep 30", code: /command-(pids-limit|timeout)/, text: '' },
    ];
    for (const c of cases) {
      const before = await env.storage.admin.putSiteArtifact(c.site, input);
      await env.custom.createNamespacedCustomObject({
        group: 'pagewright.dev',
        version: 'v1alpha1',
        plural: 'pagewrightsites',
        namespace: env.namespace,
        body: {
          apiVersion: 'pagewright.dev/v1alpha1',
          kind: 'PagewrightSite',
          metadata: { name: c.site },
          spec: { checks: { repairTurns: 0, command: { run: c.run, timeoutSeconds: 15 } } },
        },
      });
      const name = randomName('command');
      await env.createJob(name, { siteId: c.site, prompt: 'Add a note', publish: true });
      const job = await env.waitForJob(name, 'finished', finished, 180_000);
      expect([job.status.phase, job.status.reason], await env.diagnostics()).to.deep.equal(['Failed', 'ChecksFailed']);
      const command = job.status.checks?.find((x) => x.name === 'command');
      expect(command, c.run).to.include({ passed: false, introduced: 1 });
      if (typeof c.code === 'string') expect(command?.findings[0]?.code).to.equal(c.code);
      else expect(command?.findings[0]?.code).to.match(c.code);
      expect(command?.findings[0]?.message).to.contain(c.text);
      expect((await env.storage.admin.getSite(c.site)).version, 'nothing published').to.equal(before.version);
    }
  });

  it('follows up a job: `pagewright followup` resumes its session on its output, and publishes both edits over the version the first edited', async () => {
    const site = 'site-followup';
    const DOC = '<!DOCTYPE html><html><head><title>Bakery</title></head><body>';
    const before = await env.storage.admin.putSiteArtifact(
      site,
      await forgeTarGzBuffer([{ path: 'index.html', content: `${DOC}<h1>Welcome</h1></body></html>\n` }]),
    );
    await env.custom.createNamespacedCustomObject({
      group: 'pagewright.dev',
      version: 'v1alpha1',
      plural: 'pagewrightsites',
      namespace: env.namespace,
      body: { apiVersion: 'pagewright.dev/v1alpha1', kind: 'PagewrightSite', metadata: { name: site }, spec: {} },
    });
    const stolen: string[] = [];
    let sawFirstTurn = false;
    env.scripts.set('followup', (ctx) => {
      if (ctx.prompt.includes('make it blue')) {
        // resumed: the first prompt, the first command and its answer are in this conversation
        const body = JSON.stringify(ctx.request.body);
        sawFirstTurn ||= ctx.prompts.some((p) => p.includes('Add a note')) && body.includes('first-note') && body.includes('Added a note.');
        return ctx.toolOutputs.length === 1
          ? {
              kind: 'tools',
              calls: [
                {
                  type: 'shell',
                  cmd: 'grep -c \'first-note\' index.html && sed -i \'s/class="first-note"/class="first-note" style="color: blue"/\' index.html',
                },
              ],
            }
          : { kind: 'message', text: JSON.stringify({ summary: 'Made the note blue.', files_changed: ['index.html'] }) };
      }
      if (ctx.toolOutputs.length === 1) {
        stolen.push(
          ...ctx.toolOutputs[0]!.split('\n')
            .filter((l) => l.startsWith('PAGEWRIGHT_CODEX_LLM_KEY='))
            .map((l) => l.split('=')[1]!),
        );
        return { kind: 'message', text: JSON.stringify({ summary: 'Added a note.', files_changed: ['index.html'] }) };
      }
      // and, as a hostile agent would, whatever credential it can read goes into its tool output
      const steal = "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null | grep -a '^PAGEWRIGHT_'; done | sort -u";
      return {
        kind: 'tools',
        calls: [{ type: 'shell', cmd: `sed -i 's|</h1>|</h1><p class="first-note">Closed Monday</p>|' index.html; ${steal}` }],
      };
    });
    const first = randomName('first');
    await env.createJob(first, { siteId: site, prompt: 'SCRIPT:followup Add a note that we are closed on Monday.' });
    const j1 = await env.waitForJob(first, 'finished', finished, 120_000);
    expect(j1.status.phase, await env.diagnostics()).to.equal('Succeeded');
    expect(j1.status.threadId).to.match(/^[0-9a-f-]{36}$/);
    expect(stolen, 'the agent read its gateway credential').to.have.length(1);
    const session = await (await env.storage.admin.getJobObject(j1.metadata.uid, 'session.jsonl')).body.text();
    expect(session).to.contain('first-note').and.contain('[redacted]');
    expect(session).not.to.contain(stolen[0]);

    // a follow-up of a job that does not exist is refused at once
    const orphan = randomName('orphan');
    await env.createJob(orphan, { siteId: site, prompt: 'SCRIPT:followup make it blue', followUpOf: 'no-such-job' });
    const refused = await env.waitForJob(orphan, 'refused', finished, 30_000);
    expect([refused.status.phase, refused.status.reason]).to.deep.equal(['Failed', 'FollowUpUnavailable']);
    expect(refused.status.message).to.contain('no PagewrightJob no-such-job');

    // the CLI, as a user runs it: a follow-up of the first job, published, waited for
    const cli = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(REPO_ROOT, 'cli', 'main.ts'),
        'followup',
        first,
        'SCRIPT:followup Now make it blue.',
        '--publish',
        '--wait',
        '-n',
        env.namespace,
      ],
      { env: { PATH: process.env.PATH, HOME: tmpdir(), KUBECONFIG: env.cp.kubeconfigPath }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    cli.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    cli.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const [code] = await once(cli, 'close');
    expect(code, `${stderr}${stdout}${await env.diagnostics()}`).to.equal(0);
    const name = /pagewrightjob\.pagewright\.dev\/(\S+) created \(follows /.exec(stdout)?.[1];
    expect(stdout).to.contain('Succeeded: 1 files changed; published as');
    const j2 = await env.getJob(name!);
    expect(sawFirstTurn, "the first turn's conversation was resumed").to.equal(true);
    expect(j2.spec).to.include({ followUpOf: first, siteId: site });
    expect(j2.status.followUp).to.deep.include({
      job: first,
      jobId: j1.metadata.uid,
      version: j1.status.outputVersion,
      threadId: j1.status.threadId,
    });
    expect(j2.status.baseVersion).to.equal(j1.status.outputVersion);
    expect(j2.status.threadId).to.equal(j1.status.threadId);
    // the first job was never published: the follow-up replaced the version the first edited, with both edits
    const current = await env.storage.admin.getSite(site);
    expect(current.version).to.equal(j2.status.publishedVersion).and.equal(j2.status.outputVersion);
    expect(current.history[1]?.version).to.equal(before.version);
    const patch = await (await env.storage.admin.getJobObject(j2.metadata.uid, 'diff.patch')).body.text();
    expect(patch).to.contain('+').and.contain('class="first-note" style="color: blue"');
    expect(
      patch
        .split('\n')
        .filter((l) => /^-[^-]/.test(l))
        .join(),
    ).to.contain('class="first-note">Closed Monday');
  });

  it('deletes a finished job after ttlSecondsAfterFinished', async () => {
    const name = randomName('ttl');
    await env.createJob(name, { siteId: 'site-c', prompt: 'Quick edit', ttlSecondsAfterFinished: 1 });
    const done = await env.waitForJob(name, 'finished', finished, 60_000);
    expect(done.status.phase).to.equal('Succeeded');
    await waitFor('job deleted by TTL', async () => (await env.getJob(name).catch(() => null)) === null, 20_000, 200);
    await waitFor('pods deleted with it', async () => (await env.jobPods(done.metadata.uid)).length === 0, 20_000, 200);
  });
});
