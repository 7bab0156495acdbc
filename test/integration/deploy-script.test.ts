/**
 * deploy/apply.sh (what `make deploy`, `make kind-up` and `make dev-cluster` run) against the
 * real apiserver with the pinned kubectl, for what it does to the Secrets: the LLM key a user
 * set is never reset by a deploy without PAGEWRIGHT_LLM_KEY, with the base or the dev overlay.
 *
 * The API-only control plane has no controllers, so no Deployment ever rolls out: the script runs
 * with WAIT=false (it skips `kubectl rollout status`, and nothing else). Its objects go to the
 * `pagewright` namespace of this control plane, which no other suite uses.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AppsV1Api, CoreV1Api, type KubernetesObject, loadAllYaml } from '@kubernetes/client-node';
import { expect } from 'chai';
import { type ControlPlane, sharedControlPlane } from '../support/control-plane.js';
import { REPO_ROOT } from '../support/sites.js';

const run = promisify(execFile);
const NS = 'pagewright';

describe('deploy/apply.sh on the real apiserver: the LLM Secret', function () {
  this.timeout(120_000);
  let cp: ControlPlane;
  let core: CoreV1Api;
  let apps: AppsV1Api;

  before(async () => {
    cp = await sharedControlPlane();
    core = cp.kubeConfig().makeApiClient(CoreV1Api);
    apps = cp.kubeConfig().makeApiClient(AppsV1Api);
  });
  // each test starts from an install without an LLM Secret (the rest of the install is reused)
  beforeEach(async () => {
    await core.deleteNamespacedSecret({ namespace: NS, name: 'pagewright-llm' }).catch(() => undefined);
  });

  async function deploy(kustomization: 'deploy/k8s' | 'deploy/dev', env: Record<string, string> = {}): Promise<string> {
    const { stdout, stderr } = await run(join(REPO_ROOT, 'deploy/apply.sh'), [kustomization], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        KUBECONFIG: cp.kubeconfigPath,
        KUBECTL: join(cp.binDir, 'kubectl'),
        WAIT: 'false',
        ...env,
      },
      maxBuffer: 16 * 1024 * 1024,
    }).catch((err: Error & { stdout?: string; stderr?: string }) => {
      throw new Error(`deploy/apply.sh ${kustomization} failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
    });
    return stdout + stderr;
  }
  async function llmSecret(): Promise<{ key: string; url: string }> {
    const data = (await core.readNamespacedSecret({ namespace: NS, name: 'pagewright-llm' })).data ?? {};
    const text = (k: string) => Buffer.from(data[k] ?? '', 'base64').toString();
    return { key: text('api-key'), url: text('base-url') };
  }
  const gatewayRestartedAt = async () =>
    (await apps.readNamespacedDeployment({ namespace: NS, name: 'pagewright-gateway' })).spec?.template.metadata?.annotations?.[
      'kubectl.kubernetes.io/restartedAt'
    ];

  it('a deploy without PAGEWRIGHT_LLM_KEY keeps the key set before, with the base and with the dev overlay', async () => {
    await deploy('deploy/k8s', { PAGEWRIGHT_LLM_KEY: 'sk-the-real-one', PAGEWRIGHT_LLM_URL: 'https://llm.example.com/v1' });
    expect(await llmSecret()).to.deep.equal({ key: 'sk-the-real-one', url: 'https://llm.example.com/v1' });
    const restarted = await gatewayRestartedAt();
    expect(restarted, 'the gateway restarted to read the key').to.be.a('string');

    const again = await deploy('deploy/k8s');
    expect(await llmSecret()).to.deep.equal({ key: 'sk-the-real-one', url: 'https://llm.example.com/v1' });
    expect(again).to.contain('keeping the pagewright-llm Secret as it is');
    expect(again).to.not.contain('the LLM key is the placeholder');
    expect(await gatewayRestartedAt(), 'nothing changed: no restart').to.equal(restarted);

    await deploy('deploy/dev');
    expect(await llmSecret(), 'the dev overlay keeps it too').to.deep.equal({ key: 'sk-the-real-one', url: 'https://llm.example.com/v1' });

    await deploy('deploy/k8s', { PAGEWRIGHT_LLM_KEY: 'sk-the-next-one' });
    expect(await llmSecret(), 'only PAGEWRIGHT_LLM_KEY replaces it').to.deep.equal({
      key: 'sk-the-next-one',
      url: 'https://api.openai.com/v1',
    });
  });

  it('a first deploy without PAGEWRIGHT_LLM_KEY creates the placeholder (and says so), or the demo model with the dev overlay', async () => {
    const out = await deploy('deploy/k8s');
    expect(await llmSecret()).to.deep.equal({ key: 'replace-me', url: 'https://api.openai.com/v1' });
    expect(out).to.contain('note: the LLM key is the placeholder');
    const secret = await core.readNamespacedSecret({ namespace: NS, name: 'pagewright-llm' });
    expect(secret.metadata?.labels).to.include({ 'app.kubernetes.io/part-of': 'pagewright' });

    await core.deleteNamespacedSecret({ namespace: NS, name: 'pagewright-llm' });
    await deploy('deploy/dev');
    expect(await llmSecret()).to.deep.equal({ key: 'pagewright-demo-model', url: 'http://pagewright-demo-model:8090/v1' });
  });

  it('the kustomizations hold no LLM Secret: a plain `kubectl apply -k` cannot reset it either', async () => {
    for (const kustomization of ['deploy/k8s', 'deploy/dev']) {
      const rendered = loadAllYaml((await cp.kubectl(['kustomize', join(REPO_ROOT, kustomization)])).stdout) as KubernetesObject[];
      const secrets = rendered.filter((o) => o.kind === 'Secret').map((o) => o.metadata?.name);
      expect(secrets, kustomization).to.not.include('pagewright-llm');
      // the control: the gateway does read it
      expect(JSON.stringify(rendered.find((o) => o.kind === 'Deployment' && o.metadata?.name === 'pagewright-gateway'))).to.contain(
        'pagewright-llm',
      );
    }
  });
});
