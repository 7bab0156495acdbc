/**
 * The README, end to end, on a real node: Pagewright installed as a user installs it
 * (deploy/apply.sh with the dev overlay: deploy/k8s as is, plus pull policy Never, a
 * PersistentVolume and the demo model), manager and storage running as Deployments from their
 * images (the manager with its ServiceAccount's in-cluster config, leader election on, 2
 * replicas), runner pods as real containers under Pod Security "restricted". Then what a user
 * does: `kubectl apply -f examples/job.yaml`, `kubectl wait --for=condition=Complete`,
 * `kubectl get pwj -w`, `kubectl describe`, `kubectl logs`, `kubectl port-forward` to a running
 * runner, and a rolling restart of the manager while a job runs. Only the model is scripted.
 * And the red team through the gateway Service: from inside a running runner pod, as the agent,
 * with the credential it reads out of codex's environment, the path and tool tricks of
 * test/integration/gateway-hostile.test.ts; the demo model's access log shows what reached the
 * model endpoint.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import { expect } from 'chai';
import { request } from 'undici';
import { GROUP, PLURAL, PagewrightJob, VERSION } from '../../common/job-resource.js';
import { PagewrightSite, SITE_PLURAL } from '../../common/site-resource.js';
import type { RealNode } from '../support/node/cluster.js';
import { type Deployment, deployPagewright } from '../support/node/deploy.js';
import { sharedRealNode } from '../support/node/shared.js';
import { readOutputFile } from '../support/outputs.js';
import { eventsAbout } from '../support/control-plane.js';
import { waitFor } from '../support/processes.js';
import { REPO_ROOT } from '../support/sites.js';

const EXAMPLE_JOB = join(REPO_ROOT, 'examples/job.yaml');
const CLI = join(REPO_ROOT, 'dist/cli/main.js');
const JOB = 'bakery-holiday-hours';
const finished = (j: PagewrightJob) => ['Succeeded', 'Failed', 'Cancelled'].includes(j.status.phase ?? '');

describe('e2e: the README on a real node, deploy/k8s as deployed', function () {
  this.timeout(300_000);
  let node: RealNode;
  let deployed: Deployment;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  const kubectl = (args: string[], opts?: { allowFailure?: boolean }) => node.kubectl(['-n', deployed.namespace, ...args], opts);

  const getJob = async (name: string) =>
    PagewrightJob.parse(
      await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace: deployed.namespace, name }),
    );
  const waitForJob = async (name: string, what: string, predicate: (j: PagewrightJob) => boolean, timeoutMs = 120_000) => {
    let last: PagewrightJob | null = null;
    return waitFor(
      `${name} ${what}`,
      async () => {
        last = await getJob(name).catch(() => null);
        return last && predicate(last) ? last : null;
      },
      timeoutMs,
      200,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}; last status ${JSON.stringify((last as PagewrightJob | null)?.status)}\n${await diagnostics()}`);
    });
  };
  const diagnostics = async () => {
    const pods = await kubectl(['get', 'pods', '-o', 'wide'], { allowFailure: true });
    const logs = await kubectl(['logs', '-l', 'app.kubernetes.io/component=manager', '--tail=40', '--prefix'], { allowFailure: true });
    return `--- pods\n${pods.stdout}${pods.stderr}\n--- manager logs\n${logs.stdout}${logs.stderr}`;
  };
  const submit = async (name: string, prompt: string) => {
    const manifest = `apiVersion: pagewright.dev/v1alpha1\nkind: PagewrightJob\nmetadata: {name: ${name}}\nspec: {siteId: harbor-lane-bakery, prompt: ${JSON.stringify(prompt)}, timeoutSeconds: 300}\n`;
    await node.kubectl(['-n', deployed.namespace, 'apply', '-f', '-'], { input: manifest });
  };
  /** The pagewright CLI as a user runs it, with the cluster's kubeconfig. */
  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, ...args], { env: { ...process.env, KUBECONFIG: node.kubeconfigPath } }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  /** The demo model thinks this long per turn, so a job can be caught mid-run (README). */
  const setModelDelay = async (ms: number) => {
    await kubectl(['set', 'env', 'deployment/pagewright-demo-model', `PAGEWRIGHT_DEMO_MODEL_DELAY_MS=${ms}`]);
    await kubectl(['rollout', 'status', 'deployment/pagewright-demo-model', '--timeout=120s']);
  };

  before(async function () {
    this.timeout(900_000);
    node = await sharedRealNode();
    deployed = await deployPagewright(node);
    core = node.kubeConfig().makeApiClient(CoreV1Api);
    custom = node.kubeConfig().makeApiClient(CustomObjectsApi);
  });

  it('runs manager and storage as Deployments from their images, on containerd, the manager with leader election', async () => {
    const pods = (await core.listNamespacedPod({ namespace: deployed.namespace })).items;
    const of = (component: string) =>
      pods.filter((p) => p.metadata?.labels?.['app.kubernetes.io/component'] === component && p.status?.phase === 'Running');
    const managers = of('manager');
    expect(managers.map((p) => p.spec?.containers[0]?.image)).to.deep.equal(['pagewright-manager:0.1.0', 'pagewright-manager:0.1.0']);
    expect(of('storage').map((p) => p.spec?.containers[0]?.image)).to.deep.equal(['pagewright-storage:0.1.0']);
    for (const p of [...managers, ...of('storage')]) {
      expect(p.status?.containerStatuses?.[0]?.containerID, p.metadata?.name).to.match(/^containerd:\/\//);
      expect(p.spec?.nodeName).to.equal(node.nodeName);
    }
    // in-cluster config: the ServiceAccount token is mounted, no kubeconfig anywhere
    expect(managers[0]!.spec?.serviceAccountName).to.equal('pagewright-manager');
    expect(
      managers[0]!.spec?.containers[0]?.volumeMounts?.some((m) => m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount'),
    ).to.equal(true);
    const lease = await node
      .kubeConfig()
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ namespace: deployed.namespace, name: 'pagewright-manager' });
    expect(managers.map((p) => p.metadata?.name)).to.include(lease.spec?.holderIdentity);
    // the manager image carries git and its https transport, for sites' git sources and targets
    const gitVersion = await kubectl(['exec', managers[0]!.metadata!.name!, '--', 'git', '--version']);
    expect(gitVersion.stdout).to.match(/^git version 2\./);
    await kubectl(['exec', managers[0]!.metadata!.name!, '--', 'ls', '/usr/lib/git-core/git-remote-https']);
  });

  it('kubectl apply -f examples/job.yaml: Complete, the edited site in storage, and get -w, describe and logs show it', async () => {
    const watch = spawnKubectl(node, ['-n', deployed.namespace, 'get', 'pwj', '-w']);
    try {
      await kubectl(['apply', '-f', EXAMPLE_JOB]);
      const wait = await kubectl(['wait', '--for=condition=Complete', '--timeout=180s', `pwj/${JOB}`], { allowFailure: true });
      const job = await getJob(JOB);
      expect(wait.code, `kubectl wait: ${wait.stderr}\nstatus: ${JSON.stringify(job.status, null, 1)}\n${await diagnostics()}`).to.equal(0);
      const s = job.status;
      expect(s).to.include({ phase: 'Succeeded', attempt: 1, filesChanged: 1, baseVersion: deployed.baseVersion });
      expect(s.files).to.deep.equal(['index.html']);
      expect(s.summary).to.match(/Added a note to index.html/);
      const output = await readOutputFile(deployed.storage, job.metadata.uid, 'index.html');
      expect(output.version).to.equal(s.outputVersion);
      expect(output.text).to.contain('class="pagewright-note"').and.to.contain('closed from December 24');

      // the runner ran as a real container: containerd's id, the restricted security context
      const pod = await waitFor(
        'the runner container to exit',
        async () => {
          const p = await core.readNamespacedPod({ namespace: deployed.namespace, name: s.podName! });
          return p.status?.containerStatuses?.[0]?.state?.terminated ? p : null;
        },
        30_000,
        200,
      );
      expect(pod.status?.containerStatuses?.[0]?.containerID).to.match(/^containerd:\/\//);
      expect(pod.status?.containerStatuses?.[0]?.state?.terminated).to.include({ exitCode: 0, reason: 'Completed' });
      expect(pod.spec?.containers[0]?.securityContext).to.deep.include({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        runAsNonRoot: true,
      });

      await waitFor(
        'kubectl get pwj -w to show the job Succeeded',
        async () => /bakery-holiday-hours\s+harbor-lane-bakery\s+Succeeded\s+completed\s+1/.test(watch.output()),
        10_000,
        100,
      );
      expect(watch.output()).to.match(/bakery-holiday-hours\s+harbor-lane-bakery\s+(Queued|Scheduled|Running)/);
      const describe = await kubectl(['describe', 'pwj', JOB]);
      expect(describe.stdout)
        .to.match(/Phase:\s+Succeeded/)
        .and.to.match(/Events:/)
        .and.to.match(/Scheduled/);
      const logs = await kubectl(['logs', s.podName!]);
      expect(logs.stdout).to.contain('"phase":"executing_codex"').and.to.contain(job.metadata.uid);
    } finally {
      watch.stop();
    }
  });

  describe('while a job runs (the demo model slowed down, as the README says)', () => {
    before(async () => setModelDelay(8000));
    after(async () => setModelDelay(0));

    it('kubectl port-forward to the runner pod serves its /status', async () => {
      const name = 'mid-run';
      await submit(name, 'Add a line about the new sourdough');
      const running = await waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex');
      const forward = spawnKubectl(node, ['-n', deployed.namespace, 'port-forward', `pod/${running.status.podName}`, ':8082']);
      try {
        const port = await waitFor(
          'port-forward to listen',
          async () => /Forwarding from 127\.0\.0\.1:(\d+)/.exec(forward.output())?.[1],
          30_000,
          100,
        );
        const res = await request(`http://127.0.0.1:${port}/status`);
        const status = (await res.body.json()) as Record<string, unknown>;
        expect(res.statusCode).to.equal(200);
        expect(status).to.include({ status: 'running', phase: 'executing_codex', job_id: running.metadata.uid, attempt: 1 });
      } finally {
        forward.stop();
      }
      expect((await waitForJob(name, 'finished', finished)).status.phase).to.equal('Succeeded');
    });

    it("the agent's tricks through the gateway Service from inside its pod: refused, the job ends HostedToolNotAllowed, nothing else reaches the model", async () => {
      const name = 'red-team-gateway';
      await submit(name, 'Tidy the footer');
      const running = await waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex');
      // as the agent (its container, its uid): the credential from codex's environment, raw
      // requests to the gateway's Service name, one trick after another
      const exec = await kubectl(['exec', running.status.podName!, '-c', 'agent', '--', 'node', '-e', AGENT_TRICKS], {
        allowFailure: true,
      });
      // the refusal ends the attempt and the manager kills the pod: the exec may be killed with
      // it (137) before the last trick is answered; the script prints its answers so far after
      // each trick, so what it saw up to then is kept either way
      expect(exec.code, `${exec.stdout}${exec.stderr}`).to.be.oneOf([0, 137]);
      const answers = JSON.parse(exec.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, string>;
      const last = 'POST /v1/responses (input_image by URL)';
      if (exec.code === 137) {
        // killed: only by the attempt's end, which the job's reason below proves; the last
        // trick was refused on its own account or not yet answered
        expect([undefined, '403 InputNotAllowed', '403 AttemptEnded'], exec.stdout).to.include(answers[last]);
        answers[last] = '403 AttemptEnded';
      }
      expect(answers, exec.stdout).to.deep.equal({
        credential: 'found in codex environment',
        'GET /v1/models/..\\files': '404 NotFound',
        'GET /v1/models/..\\responses\\resp_1': '404 NotFound',
        'GET /v1/models/%2e%2e/files': '404 NotFound',
        'GET /v1/files': '404 NotFound',
        'POST /v1/responses?background=true': '404 NotFound',
        'POST /v1/responses (brotli)': '415 UnsupportedMediaType',
        'POST /v1/responses (mcp tool)': '403 HostedToolNotAllowed',
        // a refusal ends the attempt: its credential is dead from then on
        'POST /v1/responses (input_image by URL)': '403 AttemptEnded',
      });
      const done = await waitForJob(name, 'finished', finished);
      expect(done.status).to.include({ phase: 'Failed', reason: 'HostedToolNotAllowed' });
      // what reached the model endpoint, over this whole suite: the Responses route and the
      // preflight's model lookup, never a tool besides codex's function and custom tools
      const log = await kubectl(['logs', 'deployment/pagewright-demo-model']);
      const requests = log.stdout.split('\n').filter((l) => l.startsWith('request: '));
      expect(requests.length, log.stdout).to.be.at.least(3);
      for (const line of requests)
        expect(line).to.match(/^request: (POST \/v1\/responses tools=custom,function|GET \/v1\/models\/gpt-[\w.-]+)$/);
    });

    it('a rolling restart of the manager while the job runs: it completes with exactly one result', async () => {
      const name = 'restart-mid-run';
      await submit(name, 'Mention the holiday opening hours');
      const running = await waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex');
      const before = (
        await core.listNamespacedPod({ namespace: deployed.namespace, labelSelector: 'app.kubernetes.io/component=manager' })
      ).items.map((p) => p.metadata?.name);
      await kubectl(['rollout', 'restart', 'deployment/pagewright-manager']);
      await kubectl(['rollout', 'status', 'deployment/pagewright-manager', '--timeout=180s']);
      const done = await waitForJob(name, 'finished', finished, 180_000);
      expect(done.status, await diagnostics()).to.include({ phase: 'Succeeded', attempt: 1, reportedAttempt: 1 });
      const after = (await core.listNamespacedPod({ namespace: deployed.namespace, labelSelector: 'app.kubernetes.io/component=manager' }))
        .items;
      expect(after.map((p) => p.metadata?.name)).to.not.include.members(before.filter((n): n is string => !!n));
      // one runner pod, one terminal transition: the result was recorded once
      const pods = (
        await core.listNamespacedPod({ namespace: deployed.namespace, labelSelector: `pagewright.dev/job=${running.metadata.uid}` })
      ).items;
      expect(pods.map((p: V1Pod) => p.metadata?.name)).to.deep.equal([running.status.podName]);
      const events = await eventsAbout((args) => node.kubectl(args), deployed.namespace, name, 'reason');
      const reasons = events.split(' ');
      expect(
        reasons.filter((r) => r === 'Succeeded'),
        events,
      ).to.have.length(1);
      expect(reasons).to.not.include('Retrying');
    });
  });

  describe('the review loop, as the README does it: push, job, diff, preview, approve, pws, rollback, webhooks', () => {
    const SITE = 'harbor-lane-bakery';
    const NAME = 'review-loop';
    const received: Array<{ headers: Record<string, string | string[] | undefined>; body: string }> = [];
    let receiver: Server;
    let pushed: string;

    before(async function () {
      this.timeout(300_000);
      // the user's deployment: an HTTP receiver on this host, which the manager may reach only
      // because the cluster's config says so (http and this one address)
      receiver = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          received.push({ headers: req.headers, body });
          res.writeHead(204).end();
        });
      });
      await new Promise<void>((r) => receiver.listen(0, node.nodeIp, r));
      const port = (receiver.address() as AddressInfo).port;
      await kubectl([
        'set',
        'env',
        'deployment/pagewright-manager',
        'PAGEWRIGHT_WEBHOOK_ALLOW_HTTP=true',
        `PAGEWRIGHT_WEBHOOK_ALLOWED_CIDRS=${node.nodeIp}/32`,
      ]);
      await kubectl(['rollout', 'status', 'deployment/pagewright-manager', '--timeout=180s']);
      await kubectl([
        'patch',
        'pws',
        SITE,
        '--type=merge',
        '-p',
        JSON.stringify({ spec: { webhook: { url: `http://${node.nodeIp}:${port}/hooks/pagewright` } } }),
      ]);
      pushed = (await getSite(SITE)).status?.currentVersion ?? '';
    });
    after(async () => {
      receiver?.close();
    });

    const getSite = async (name: string) =>
      PagewrightSite.parse(
        await custom.getNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: SITE_PLURAL,
          namespace: deployed.namespace,
          name,
        }),
      );

    it('a job of the pushed site: its diff summary in the status, `pagewright diff` shows the edited lines', async () => {
      expect(pushed, 'deployPagewright pushed the example with `pagewright sites push`').to.equal(deployed.baseVersion);
      await submit(NAME, 'Add a short notice that the bakery is closed on Boxing Day');
      const done = await waitForJob(NAME, 'finished', finished);
      expect(done.status, await diagnostics()).to.include({ phase: 'Succeeded', baseVersion: pushed });
      expect(done.status.diffSummary).to.deep.equal({
        filesAdded: 0,
        filesModified: 1,
        filesDeleted: 0,
        linesAdded: 1,
        linesRemoved: 0,
        truncated: false,
      });
      const diff = await cli(['diff', NAME, '-n', deployed.namespace]);
      expect(diff.code, diff.stderr).to.equal(0);
      expect(diff.stdout).to.include('diff --git a/index.html b/index.html');
      expect(diff.stdout).to.match(
        /^\+\s*<aside class="pagewright-note" role="note">Add a short notice that the bakery is closed on Boxing Day<\/aside>$/m,
      );
      // not a terminal: no colour
      expect(diff.stdout).not.to.include('\u001b[');
    });

    it('`pagewright preview` serves the edited page on 127.0.0.1, isolated, until interrupted', async () => {
      const preview = spawn(process.execPath, [CLI, 'preview', NAME, '-n', deployed.namespace], {
        env: { ...process.env, KUBECONFIG: node.kubeconfigPath },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      preview.stdout.on('data', (c: Buffer) => (out += c.toString()));
      preview.stderr.on('data', (c: Buffer) => (out += c.toString()));
      try {
        // `url: http://127.0.0.1:PORT/review`: the review page; the output beside it
        const url = await waitFor(
          'pagewright preview to print its URL',
          async () => /^url: (http:\/\/127\.0\.0\.1:\d+\/review)$/m.exec(out)?.[1],
          60_000,
          100,
        );
        const page = await request(url.replace(/review$/, 'output/index.html'));
        const html = await page.body.text();
        expect(page.statusCode, html).to.equal(200);
        expect(html).to.include('closed on Boxing Day');
        expect(String(page.headers['content-security-policy'])).to.match(/\bsandbox\b/);
        const review = await request(url);
        expect(review.statusCode).to.equal(200);
        expect(await review.body.text()).to.include(NAME);
      } finally {
        preview.kill('SIGINT');
      }
      expect(await new Promise((r) => preview.on('exit', (code) => r(code)))).to.equal(0);
    });

    it('`pagewright approve` publishes it: `kubectl get pws` shows the new version, made current by the job', async () => {
      const approve = await cli(['approve', NAME, '-n', deployed.namespace]);
      expect(approve.code, `${approve.stdout}${approve.stderr}`).to.equal(0);
      const job = await getJob(NAME);
      const published = job.status.conditions?.find((c) => c.type === 'Published');
      expect(published?.status, JSON.stringify(job.status)).to.equal('True');
      const site = await getSite(SITE);
      expect(site.status?.currentVersion).to.equal(job.status.outputVersion);
      const pws = await kubectl(['get', 'pws', SITE]);
      expect(pws.stdout).to.match(new RegExp(`${SITE}\\s+${job.status.outputVersion!.slice(0, 12)}\\s+${NAME}\\s+\\d+`));
    });

    it('`pagewright sites rollback` makes the pushed version current again, and the webhook saw each event once, signed', async () => {
      const rollback = await cli(['sites', 'rollback', SITE, '-n', deployed.namespace]);
      expect(rollback.code, `${rollback.stdout}${rollback.stderr}`).to.equal(0);
      expect((await getSite(SITE)).status?.currentVersion).to.equal(pushed);
      const history = await cli(['sites', 'history', SITE, '-n', deployed.namespace]);
      expect(history.stdout)
        .to.match(/rolled.?back/i)
        .and.to.match(/published/i)
        .and.to.match(/pushed/i);

      const types = () => received.map((r) => (JSON.parse(r.body) as { type: string }).type);
      await waitFor('the webhook to receive the rollback', async () => types().includes('dev.pagewright.site.rolledback'), 90_000, 200);
      // the newest entry when the webhook was configured (the push), then each change once
      expect(types()).to.deep.equal([
        'dev.pagewright.site.pushed',
        'dev.pagewright.job.succeeded',
        'dev.pagewright.site.published',
        'dev.pagewright.site.rolledback',
      ]);
      const ids = received.map((r) => r.headers['webhook-id']);
      expect(new Set(ids).size).to.equal(ids.length);
      // Standard Webhooks: HMAC-SHA256 of "id.timestamp.body" with the site's key, from the Secret the manager wrote
      const secret = await core.readNamespacedSecret({ namespace: deployed.namespace, name: `${SITE}-webhook` });
      const key = Buffer.from(
        Buffer.from(secret.data?.secret ?? '', 'base64')
          .toString()
          .replace(/^whsec_/, ''),
        'base64',
      );
      for (const r of received) {
        const signed = `${r.headers['webhook-id']}.${r.headers['webhook-timestamp']}.${r.body}`;
        const expected = `v1,${createHmac('sha256', key).update(signed).digest('base64')}`;
        expect(String(r.headers['webhook-signature']).split(' ')).to.include(expected);
      }
      const rolledBack = JSON.parse(received.at(-1)!.body) as { data: { version: string; fetch: { command: string } } };
      expect(rolledBack.data.version).to.equal(pushed);
      expect(rolledBack.data.fetch.command).to.include(`pagewright sites pull ${SITE} --version ${pushed}`);
    });
  });
});

/**
 * What a hostile agent runs inside its runner pod (node -e, in the agent container): finds the
 * gateway credential in codex's environment (the agent's uid may read its own processes), then
 * sends each trick to the gateway Service on a raw socket (no client library normalises the
 * paths), and prints after each trick one JSON object: the tricks so far and each answer's status
 * and error code (the last line is what it saw, even when the pod is killed under it).
 */
const AGENT_TRICKS = String.raw`
const fs = require('node:fs'), net = require('node:net'), zlib = require('node:zlib');
let key = null;
// codex may be between two processes (a turn ended, the checks run, a repair turn starts): look
// again for a while rather than send no credential at all
for (const until = Date.now() + 30000; key === null && Date.now() < until; Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200)) {
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const v = fs.readFileSync('/proc/' + pid + '/environ', 'utf8').split('\0').find((e) => e.startsWith('PAGEWRIGHT_CODEX_LLM_KEY='));
      if (v) { key = v.slice(v.indexOf('=') + 1); break; }
    } catch {}
  }
}
const send = (method, target, body, headers = {}) => new Promise((resolve) => {
  const s = net.connect(8085, 'pagewright-gateway');
  const head = [method + ' ' + target + ' HTTP/1.1', 'Host: pagewright-gateway:8085', 'Connection: close', 'Authorization: Bearer ' + key,
    'Content-Type: application/json', 'Content-Length: ' + body.length, ...Object.entries(headers).map(([k, v]) => k + ': ' + v)];
  s.write(head.join('\r\n') + '\r\n\r\n'); s.write(body);
  const chunks = []; s.on('data', (c) => chunks.push(c)); s.on('error', (e) => resolve('error ' + e.code));
  s.on('close', () => {
    const text = Buffer.concat(chunks).toString();
    const code = (/"code":"(\w+)"/.exec(text) || [])[1] || '?';
    resolve(((/^HTTP\/1\.1 (\d+)/.exec(text) || [])[1] || '?') + ' ' + code);
  });
});
const body = (extra) => Buffer.from(JSON.stringify({ model: 'gpt-5.5', stream: true, input: [{ role: 'user', content: 'hi' }], ...extra }));
const out = { credential: key ? 'found in codex environment' : 'not found' };
// the answers so far, after each one: the pod may be killed before the last
const answer = (k, v) => { out[k] = v; console.log(JSON.stringify(out)); };
(async () => {
  console.log(JSON.stringify(out));
  for (const target of ['/v1/models/..\\files', '/v1/models/..\\responses\\resp_1', '/v1/models/%2e%2e/files', '/v1/files'])
    answer('GET ' + target, await send('GET', target, Buffer.alloc(0)));
  answer('POST /v1/responses?background=true', await send('POST', '/v1/responses?background=true', body({})));
  answer('POST /v1/responses (brotli)', await send('POST', '/v1/responses', zlib.brotliCompressSync(Buffer.alloc(64 << 20, 32)), { 'Content-Encoding': 'br' }));
  answer('POST /v1/responses (mcp tool)', await send('POST', '/v1/responses', body({ tools: [{ type: 'mcp', server_label: 'x', server_url: 'https://attacker.example/mcp' }] })));
  // the refusal reaches the manager, which ends the attempt; until the gateway's watch sees that, the next trick is refused on its own account
  const image = body({ input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://attacker.example/x.png' }] }] });
  for (let i = 0; i < 150; i++) {
    answer('POST /v1/responses (input_image by URL)', await send('POST', '/v1/responses', image));
    if (out['POST /v1/responses (input_image by URL)'] !== '403 InputNotAllowed') break;
    await new Promise((r) => setTimeout(r, 100));
  }
})();
`;

/** kubectl running in the background (watch, port-forward), its output collected. */
function spawnKubectl(node: RealNode, args: string[]): { output(): string; stop(): void; proc: ChildProcess } {
  const proc = spawn(join(node.binDir, 'kubectl'), [`--kubeconfig=${node.kubeconfigPath}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
  return { output: () => out, stop: () => proc.kill('SIGTERM'), proc };
}
