/**
 * The reconciler's collaborators, each on the real apiserver (and real storage), and the paths of
 * the reconcile that only a crash, a lost pod or a stuck image pull take: a pod lost while Running
 * (PodLost, retried), a job stored as Scheduled whose pod was never created (the manager crashed
 * between the two), an image that never arrives (its pod deleted, ImagePullFailed), and a publish
 * that went through just before a crash.
 *
 * The API-only control plane: no kubelet runs the pods, so this test plays the kubelet where a
 * path needs it (writing a pod's status through pods/status, as a kubelet does) and the runner
 * where one needs its result (storage objects written with the runner's credential). The pods
 * themselves, run for real, are test/node's.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, type V1Pod, setHeaderOptions } from '@kubernetes/client-node';
import { expect } from 'chai';
import { request } from 'undici';
import { GatewayCredentials } from '../../common/gateway-credential.js';
import { GROUP, PLURAL, PagewrightJob, VERSION } from '../../common/job-resource.js';
import { silentLogger } from '../../common/logger.js';
import { StorageClient } from '../../common/storage-client.js';
import { JobTokens } from '../../common/tokens.js';
import { SignedAttemptCredentials } from '../../manager/attempt-credentials.js';
import { KubePodControl } from '../../manager/pod-control.js';
import { podName, secretName } from '../../manager/pod-spec.js';
import { StoragePublisher } from '../../manager/publisher.js';
import { HttpRunnerClient } from '../../manager/runner-client.js';
import { packArchive, packDirectory } from '../../runner/archive.js';
import { startModelServer } from '../../cli/model-server.js';
import { type ControlPlane, createNamespace, eventsAbout, sharedControlPlane } from '../support/control-plane.js';
import { selfOwner } from '../support/control-plane/owner.js';
import { ensureCrd, randomName } from '../support/manager-env.js';
import { createSiteIfAbsent } from '../../common/site-resource.js';
import { type ManagerProcess, startManagerProcess } from '../support/manager-process.js';
import { defaultPodConfig } from '../support/pod-config.js';
import { getFreePort } from '../support/ports.js';
import { waitFor } from '../support/processes.js';
import { jobResult } from '../support/job-result.js';
import { type RunnerUnderTest, startRunner } from '../support/runner-process.js';
import { EXAMPLE_SITE } from '../support/sites.js';
import { type TestStorage, startTestStorage } from '../support/storage.js';

const STATUS_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

describe('reconciler collaborators and the rare paths, on the real apiserver', function () {
  this.timeout(120_000);
  let cp: ControlPlane;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  let ns: string;
  let storage: TestStorage;
  let scratch: string;
  let siteArchive: string;
  const gatewaySecret = randomBytes(32).toString('hex');
  const owner = selfOwner();

  before(async () => {
    cp = await sharedControlPlane();
    await ensureCrd(cp);
    ns = await createNamespace(cp, 'reconcile');
    core = cp.kubeConfig().makeApiClient(CoreV1Api);
    custom = cp.kubeConfig().makeApiClient(CustomObjectsApi);
    storage = await startTestStorage();
    scratch = await mkdtemp(join(tmpdir(), 'pw-reconcile-'));
    siteArchive = join(scratch, 'site.tar.gz');
    await packDirectory(EXAMPLE_SITE, siteArchive);
  });
  // the managers started here are stopped after each test; the owner (this process, which also
  // owns the shared control plane) only makes them die with it if it is killed
  after(async () => {
    await storage?.close();
    await rm(scratch, { recursive: true, force: true });
  });

  const config = () => ({ ...defaultPodConfig(), gatewaySecret, tokenSecret: storage.tokenSecret }) as never;
  /** Storage as a runner sees it, with its credential. */
  const clientFor = (token: string) => new StorageClient({ baseUrl: storage.url, token });
  async function createJob(name: string, spec: Record<string, unknown>): Promise<PagewrightJob> {
    await createSiteIfAbsent(custom, ns, String(spec.siteId));
    return PagewrightJob.parse(
      await custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace: ns,
        body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PagewrightJob', metadata: { name }, spec },
      }),
    );
  }
  async function getJob(name: string): Promise<PagewrightJob> {
    return PagewrightJob.parse(
      await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace: ns, name }),
    );
  }
  async function writeStatus(name: string, status: Record<string, unknown>): Promise<PagewrightJob> {
    return PagewrightJob.parse(
      await custom.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, plural: PLURAL, namespace: ns, name, body: { status } },
        STATUS_PATCH,
      ),
    );
  }
  /** As a kubelet writes a pod's status. */
  async function kubeletSays(pod: string, status: NonNullable<V1Pod['status']>): Promise<void> {
    await core.patchNamespacedPodStatus({ namespace: ns, name: pod, body: { status } }, STATUS_PATCH);
  }

  describe('collaborators', () => {
    it('AttemptCredentials: the runner credential is the same string every time (for /kill), both name the attempt', async () => {
      const job = PagewrightJob.parse({
        metadata: { name: 'c', namespace: ns, uid: 'u-cred', resourceVersion: '1' },
        spec: { siteId: 's', prompt: 'p' },
        status: { attempt: 2, attemptStartTime: new Date().toISOString() },
      });
      const creds = new SignedAttemptCredentials(config(), new JobTokens(storage.tokenSecret), new GatewayCredentials(gatewaySecret));
      const issued = await creds.issue(job, 2);
      if (!issued.ok) throw new Error(`refused: ${issued.message}`);
      const one = issued.secrets;
      expect(await creds.runnerToken(job, 2)).to.equal(one.runnerToken);
      expect(await new JobTokens(storage.tokenSecret).verify(one.runnerToken)).to.include({ jobId: 'u-cred', attempt: 2 });
      expect(await new GatewayCredentials(gatewaySecret).verify(one.gatewayCredential)).to.include({
        jobId: 'u-cred',
        attempt: 2,
        model: 'gpt-5.5',
      });
      const refused = await new JobTokens(storage.tokenSecret).verify(one.gatewayCredential).catch((e: { code: string }) => e.code);
      expect(refused, 'a gateway credential is no runner credential').to.equal('TokenInvalid');
    });

    it('AttemptCredentials: an attempt the model policy refuses now gets no credential but its reason', async () => {
      const creds = new SignedAttemptCredentials(config(), new JobTokens(storage.tokenSecret), new GatewayCredentials(gatewaySecret));
      const job = (spec: Record<string, unknown>) =>
        PagewrightJob.parse({
          metadata: { name: 'c', namespace: ns, uid: 'u-cred', resourceVersion: '1' },
          spec: { siteId: 's', prompt: 'p', ...spec },
          status: { attempt: 2, attemptStartTime: new Date().toISOString() },
        });
      expect(await creds.issue(job({ model: 'not-on-the-list' }), 2)).to.deep.include({ ok: false, reason: 'ModelNotAllowed' });
      expect(await creds.issue(job({ budget: { maxRequests: 1_000_000 } }), 2)).to.deep.include({ ok: false, reason: 'BudgetNotAllowed' });
    });

    it("PodControl: creates an attempt's Secret and pod (owned, idempotent), finds, deletes them, and tracks expectations", async () => {
      const job = await createJob(randomName('podctl'), { siteId: 'site-a', prompt: 'x' });
      const control = new KubePodControl(core, config(), () => []);
      const creds = { runnerToken: 'rt', gatewayCredential: 'gc' };
      await control.createAttempt(job, 1, creds);
      await control.createAttempt(job, 1, creds); // a re-run after a crash: no error, nothing doubled
      expect(control.expecting(job, 1)).to.equal(true);
      const pods = await control.livePods(job);
      expect(pods.map((p) => p.metadata?.name)).to.deep.equal([podName(job, 1)]);
      expect(pods[0]!.metadata?.ownerReferences?.[0]).to.include({ uid: job.metadata.uid, controller: true });
      const secret = await core.readNamespacedSecret({ namespace: ns, name: secretName(job, 1) });
      expect(Buffer.from(secret.data!['runner-token']!, 'base64').toString()).to.equal('rt');
      expect((await control.readPod(job, 1))?.metadata?.name).to.equal(podName(job, 1));
      await control.deletePods(job, pods);
      await control.deleteSecret(job, 1);
      await control.deleteSecret(job, 1); // already gone: fine
      await waitFor('pod gone', async () => (await control.readPod(job, 1)) === null, 20_000, 100);
      expect(
        await core.readNamespacedSecret({ namespace: ns, name: secretName(job, 1) }).then(
          () => 'there',
          () => 'gone',
        ),
      ).to.equal('gone');
    });

    it('Publisher: recovers a manifest for its attempt only, seals, publishes the reported version, and deletes outputs', async () => {
      const publisher = new StoragePublisher(storage.admin);
      const base = (await storage.admin.putSiteArtifact('pub-site', await readFile(siteArchive))).version;
      const job = PagewrightJob.parse({
        metadata: { name: 'p', namespace: ns, uid: 'u-publish', resourceVersion: '1' },
        spec: { siteId: 'pub-site', prompt: 'p', publish: true },
        status: { attempt: 1, baseVersion: base },
      });
      expect(await publisher.recoveredResult(job, 1)).to.equal(null);
      const runner = new JobTokens(storage.tokenSecret);
      const jobClient = clientFor(await runner.issue({ jobId: 'u-publish', siteId: 'pub-site', attempt: 1, ttlSeconds: 60 }));
      const output = await jobClient.putJobObject('u-publish', 'output.tar.gz', await readFile(siteArchive));
      const result = jobResult('u-publish', 1, { files_changed: 0, files: [], base_version: base, output_version: output.version });
      await jobClient.putJobObject(
        'u-publish',
        'manifest.json',
        Buffer.from(
          JSON.stringify({
            manifest_version: 1,
            job_id: 'u-publish',
            site_id: 'pub-site',
            attempt: 1,
            changes: [],
            files: [],
            output_size: output.size,
            codex_version: null,
            model: 'm',
            result,
          }),
        ),
      );
      expect(await publisher.recoveredResult(job, 2), "another attempt's manifest").to.equal(null);
      expect((await publisher.recoveredResult(job, 1))?.output_version).to.equal(output.version);
      await publisher.seal(job, 1);
      const late = await jobClient.putJobObject('u-publish', 'log', Buffer.from('late')).catch((e: { code: string }) => e.code);
      expect(late, 'a write after the seal').to.equal('AttemptEnded');
      const wrong = await publisher.publish({ ...job, status: { ...job.status, outputVersion: 'f'.repeat(64) } });
      expect(wrong).to.deep.include({ ok: false, reason: 'UploadFailed' });
      expect(await publisher.publish({ ...job, status: { ...job.status, outputVersion: output.version } })).to.deep.equal({
        ok: true,
        version: output.version,
      });
      await publisher.deleteOutputs(job);
      expect(
        await storage.admin.getJob('u-publish').then(
          () => 'there',
          () => 'gone',
        ),
      ).to.equal('gone');
    });

    it("RunnerClient: POST /kill with the attempt's credential ends a real runner's job as Killed", async () => {
      const model = await startModelServer({ script: () => ({ kind: 'hang' }) });
      let runner: RunnerUnderTest | undefined;
      try {
        await storage.admin.putSiteArtifact('kill-site', await readFile(siteArchive));
        const job = { job_id: 'u-kill', site_id: 'kill-site', prompt: 'wait', attempt: 1, timeout_seconds: 120 };
        const token = await new JobTokens(storage.tokenSecret).issue({ jobId: 'u-kill', siteId: 'kill-site', attempt: 1, ttlSeconds: 120 });
        // it keeps answering /status after the job ended, for the check below
        const started = await startRunner({
          job,
          token,
          storageUrl: storage.url,
          llmUrl: model.url,
          llmKey: model.key,
          env: { PAGEWRIGHT_EXIT_DELAY_MS: '30000' },
        });
        runner = started;
        await waitFor('executing_codex', async () => (await started.status()).phase === 'executing_codex', 60_000, 100);
        const port = Number(new URL(started.url).port);
        const pod: V1Pod = { metadata: { name: 'r' }, status: { phase: 'Running', podIP: '127.0.0.1' } };
        await new HttpRunnerClient(port, silentLogger).kill(pod, token);
        const ended = await waitFor(
          'the job to end',
          async () => {
            const s = await started.status();
            return s.status === 'failed' || s.status === 'completed' ? s : null;
          },
          20_000,
          100,
        ).catch((err: Error) => {
          throw new Error(`${err.message}\n${started.stderr().slice(-3000)}`);
        });
        expect(ended).to.deep.include({ status: 'failed', reason: 'Killed' });
      } finally {
        runner?.proc.kill('SIGKILL');
        await model.close();
      }
    });
  });

  describe('the rare paths, with the real manager', () => {
    let manager: ManagerProcess | null = null;
    const reportToken = randomBytes(16).toString('hex');
    const logPath = () => join(scratch, 'manager.log');
    async function startManager(env: Record<string, string> = {}): Promise<ManagerProcess> {
      manager = await startManagerProcess({
        kubeconfigPath: cp.kubeconfigPath,
        namespace: ns,
        host: '127.0.0.1',
        port: await getFreePort(),
        owner,
        storage: { url: storage.url, adminToken: storage.adminToken, tokenSecret: storage.tokenSecret },
        // no runner runs here: the gateway is never called
        gateway: { url: 'http://127.0.0.1:9/v1', secret: gatewaySecret, reportToken },
        runnerImage: 'pagewright-runner:0.1.0',
        log: createWriteStream(logPath(), { flags: 'a' }),
        logPath: logPath(),
        env: { PAGEWRIGHT_IMAGE_PULL_TIMEOUT_SECONDS: '1', ...env },
      });
      return manager;
    }
    afterEach(async () => manager?.kill('SIGKILL'));
    const until = async (name: string, what: string, p: (j: PagewrightJob) => boolean) =>
      waitFor(
        `${name}: ${what}`,
        async () => {
          const j = await getJob(name).catch(() => null);
          return j && p(j) ? j : null;
        },
        30_000,
        100,
      ).catch(async (err: Error) => {
        throw new Error(
          `${err.message}\nstatus: ${JSON.stringify((await getJob(name).catch(() => null))?.status)}\n${(await readFile(logPath(), 'utf8')).slice(-3000)}`,
        );
      });

    /** The job's pod, once the manager created it. */
    const podOf = (scheduled: PagewrightJob) =>
      waitFor(
        'its pod',
        async () => core.readNamespacedPod({ namespace: ns, name: scheduled.status.podName! }).catch(() => null),
        10_000,
        100,
      );

    it('a pod lost while Running: PodLost, and a new attempt', async () => {
      await startManager();
      const name = randomName('lost');
      await storage.admin.putSiteArtifact('site-lost', await readFile(siteArchive));
      const job = await createJob(name, { siteId: 'site-lost', prompt: 'x', retries: 1 });
      const scheduled = await until(name, 'Scheduled', (j) => j.status.phase === 'Scheduled');
      await podOf(scheduled);
      await kubeletSays(scheduled.status.podName!, {
        phase: 'Running',
        containerStatuses: [
          { name: 'runner', image: 'x', imageID: '', ready: true, restartCount: 0, state: { running: { startedAt: new Date() } } },
        ],
      });
      await until(name, 'Running', (j) => j.status.phase === 'Running');
      await core.deleteNamespacedPod({ namespace: ns, name: scheduled.status.podName!, gracePeriodSeconds: 0 });
      const retried = await until(name, 'attempt 2', (j) => (j.status.attempt ?? 0) === 2);
      expect(retried.status.podName).to.equal(podName(job, 2));
      const events = await eventsAbout((args) => cp.kubectl(args), ns, name, 'message');
      expect(events).to.match(/attempt 1 failed \(PodLost\): runner pod .* disappeared/);
    });

    it('a refusal of what no job needs (a hosted tool): the attempt ends at once, its pod deleted, the job Failed with that reason, not retried', async () => {
      const m = await startManager();
      const name = randomName('refused');
      await storage.admin.putSiteArtifact('site-refused', await readFile(siteArchive));
      const job = await createJob(name, { siteId: 'site-refused', prompt: 'x', retries: 2, publish: true });
      const scheduled = await until(name, 'Scheduled', (j) => j.status.phase === 'Scheduled');
      await podOf(scheduled);
      await kubeletSays(scheduled.status.podName!, {
        phase: 'Running',
        containerStatuses: [
          { name: 'runner', image: 'x', imageID: '', ready: true, restartCount: 0, state: { running: { startedAt: new Date() } } },
        ],
      });
      await until(name, 'Running', (j) => j.status.phase === 'Running');
      // what the gateway reports when the agent declares an mcp tool (gateway/app.ts refuse())
      const report = await request(`${m.url}/jobs/${job.metadata.uid}/usage`, {
        method: 'POST',
        headers: { authorization: `Bearer ${reportToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          job_id: job.metadata.uid,
          attempt: 1,
          usage: { requests: 1, inputTokens: 0, outputTokens: 0 },
          refusal: { reason: 'HostedToolNotAllowed', message: 'tools[3]: the hosted tool mcp is not allowed on this cluster' },
        }),
      });
      expect(report.statusCode).to.equal(200);
      await report.body.dump();
      // the runner is still running (no kubelet here ends it): the manager deletes its pod itself
      const failed = await until(name, 'Failed', (j) => j.status.phase === 'Failed');
      expect(failed.status).to.include({ reason: 'HostedToolNotAllowed', attempt: 1 });
      expect(failed.status.message).to.match(/hosted tool mcp/);
      await waitFor(
        'its pod gone',
        async () => !(await core.readNamespacedPod({ namespace: ns, name: scheduled.status.podName! }).catch(() => null)),
        10_000,
        100,
      );
      expect((await storage.admin.getSite('site-refused')).history, 'nothing published').to.have.length(1);
    });

    it('stored as Scheduled, its pod never created (a crash between the two): the pod is created for that attempt, not a new one', async () => {
      const name = randomName('nopod');
      const job = await createJob(name, { siteId: 'site-nopod', prompt: 'x' });
      await writeStatus(name, {
        phase: 'Scheduled',
        jobId: job.metadata.uid,
        attempt: 1,
        podName: podName(job, 1),
        attemptStartTime: new Date().toISOString(),
      });
      await startManager();
      const pod = await waitFor(
        "the attempt's pod",
        async () => core.readNamespacedPod({ namespace: ns, name: podName(job, 1) }).catch(() => null),
        30_000,
        100,
      );
      expect(pod.metadata?.labels?.['pagewright.dev/attempt']).to.equal('1');
      await core.readNamespacedSecret({ namespace: ns, name: secretName(job, 1) });
      const now = await getJob(name);
      expect(now.status).to.include({ phase: 'Scheduled', attempt: 1 });
      expect(
        (await core.listNamespacedPod({ namespace: ns, labelSelector: `pagewright.dev/job=${job.metadata.uid}` })).items,
      ).to.have.length(1);
    });

    it('a retry whose model the allowlist no longer allows fails ModelNotAllowed at once, with its Event, and starts no pod', async () => {
      // attempt 1 ran under a manager that allowed gpt-5.5 and was lost (PodLost); its retry is due.
      // The manager was then restarted with another allowlist.
      const name = randomName('allow');
      const job = await createJob(name, { siteId: 'site-allow', prompt: 'x', model: 'gpt-5.5', retries: 2 });
      await writeStatus(name, {
        phase: 'Queued',
        jobId: job.metadata.uid,
        attempt: 1,
        podName: podName(job, 1),
        startTime: new Date().toISOString(),
        reason: 'PodLost',
        message: 'attempt 1 failed (PodLost: runner pod disappeared); retrying',
        nextAttemptTime: new Date().toISOString(),
      });
      await startManager({ PAGEWRIGHT_CODEX_MODEL: 'gpt-5.4', PAGEWRIGHT_MODEL_ALLOWLIST: 'gpt-5.4' });
      const failed = await until(name, 'Failed', (j) => j.status.phase === 'Failed');
      expect(failed.status).to.include({ reason: 'ModelNotAllowed', attempt: 1 });
      expect(failed.status.message).to.match(/^attempt 2 refused: spec.model "gpt-5.5" is not allowed here; allowed: gpt-5.4/);
      const events = await eventsAbout((args) => cp.kubectl(args), ns, name, 'message');
      expect(events).to.contain('ModelNotAllowed: attempt 2 refused');
      expect(
        (await core.listNamespacedPod({ namespace: ns, labelSelector: `pagewright.dev/job=${job.metadata.uid}` })).items,
      ).to.have.length(0);
    });

    it('stored Scheduled for a retry the budget caps now refuse, without a pod: fails BudgetNotAllowed and frees its site for the next job', async () => {
      // the state a manager without this fix left behind: attempt 2 Scheduled, its pod never
      // created because issuing its credentials threw, retried for ever
      const name = randomName('caps');
      const job = await createJob(name, { siteId: 'site-caps', prompt: 'x', budget: { maxRequests: 500 } });
      await writeStatus(name, {
        phase: 'Scheduled',
        jobId: job.metadata.uid,
        attempt: 2,
        podName: podName(job, 2),
        startTime: new Date().toISOString(),
        attemptStartTime: new Date().toISOString(),
      });
      const next = randomName('caps-next');
      await createJob(next, { siteId: 'site-caps', prompt: 'x', budget: { maxRequests: 50 } });
      await startManager({ PAGEWRIGHT_BUDGET_MAX_REQUESTS: '100' });
      const failed = await until(name, 'Failed', (j) => j.status.phase === 'Failed');
      expect(failed.status).to.include({ reason: 'BudgetNotAllowed', attempt: 2 });
      expect(failed.status.message).to.contain('attempt 2 refused: spec.budget is above this cluster');
      expect(failed.status.message).to.contain('maxRequests 500 > 100');
      expect(await eventsAbout((args) => cp.kubectl(args), ns, name, 'reason')).to.contain('Failed');
      expect(
        (await core.listNamespacedPod({ namespace: ns, labelSelector: `pagewright.dev/job=${job.metadata.uid}` })).items,
      ).to.have.length(0);
      // the site is free again: the job waiting for it starts
      const started = await until(next, 'Scheduled', (j) => j.status.phase === 'Scheduled');
      expect(started.status.attempt).to.equal(1);
    });

    it('an image that never arrives: the pod is deleted and the job fails ImagePullFailed', async () => {
      await startManager();
      const name = randomName('pull');
      const job = await createJob(name, { siteId: 'site-pull', prompt: 'x', retries: 2 });
      const scheduled = await until(name, 'Scheduled', (j) => j.status.phase === 'Scheduled');
      await podOf(scheduled);
      await new Promise((r) => setTimeout(r, 1100)); // past the 1 s pull timeout this manager has
      await kubeletSays(scheduled.status.podName!, {
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'runner',
            image: 'x',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "x"' } },
          },
        ],
      });
      const failed = await until(name, 'Failed', (j) => j.status.phase === 'Failed');
      expect(failed.status).to.include({ reason: 'ImagePullFailed', attempt: 1 });
      expect(failed.status.message).to.contain('ImagePullBackOff');
      await waitFor(
        'pod deleted',
        async () =>
          (await core.listNamespacedPod({ namespace: ns, labelSelector: `pagewright.dev/job=${job.metadata.uid}` })).items.length === 0,
        20_000,
        100,
      );
    });

    it('a publish that went through just before a crash: the job succeeds with that version, nothing published twice', async () => {
      const name = randomName('republish');
      const base = (await storage.admin.putSiteArtifact('site-republish', await readFile(siteArchive))).version;
      const job = await createJob(name, { siteId: 'site-republish', prompt: 'x', publish: true });
      const uid = job.metadata.uid;
      // the runner's output and result, then the crashed manager's publish
      const jobClient = clientFor(
        await new JobTokens(storage.tokenSecret).issue({ jobId: uid, siteId: 'site-republish', attempt: 1, ttlSeconds: 60 }),
      );
      // an edited site: another version than the base
      await writeFile(join(scratch, 'edited.html'), `<p>edited ${name}</p>`);
      await packArchive(scratch, ['edited.html'], join(scratch, 'edited.tar.gz'));
      const output = await jobClient.putJobObject(uid, 'output.tar.gz', await readFile(join(scratch, 'edited.tar.gz')));
      expect(output.version).to.not.equal(base);
      await writeStatus(name, {
        phase: 'Running',
        jobId: uid,
        attempt: 1,
        podName: podName(job, 1),
        attemptStartTime: new Date().toISOString(),
        reportedAttempt: 1,
        runnerPhase: 'completed',
        baseVersion: base,
        outputVersion: output.version,
        filesChanged: 0,
        files: [],
      });
      await storage.admin.publish('site-republish', uid, base, output.version);
      const before = await storage.admin.getSite('site-republish');
      await startManager();
      const done = await until(name, 'Succeeded', (j) => j.status.phase === 'Succeeded');
      expect(done.status.publishedVersion).to.equal(output.version);
      const after = await storage.admin.getSite('site-republish');
      expect(after.history).to.deep.equal(before.history);
    });
  });
});
