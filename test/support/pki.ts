/**
 * The test clusters' certificates, made with openssl: one CA per cluster, and the serving and
 * client certificates its components present. Kubernetes authenticates a client certificate as
 * user = CN and groups = O, so a subject like `/O=system:nodes/CN=system:node:NAME` is all the
 * identity a kubelet needs for the Node authorizer, and the bootstrap RBAC of kube-apiserver
 * already grants `system:kube-proxy`, `system:kube-scheduler` and
 * `system:kube-controller-manager` what those components do.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface KeyPair {
  cert: string;
  key: string;
}

export class Pki {
  readonly caCert: string;
  readonly caKey: string;

  private constructor(readonly dir: string) {
    this.caCert = join(dir, 'ca.crt');
    this.caKey = join(dir, 'ca.key');
  }

  /** The CA already in `dir` (made by create()), to sign more certificates with it. */
  static open(dir: string): Pki {
    return new Pki(dir);
  }

  /** A new CA in `dir` (valid 7 days: these clusters live for a test run or a dev session). */
  static async create(dir: string, name = 'pagewright-test-ca'): Promise<Pki> {
    const pki = new Pki(dir);
    await pki.#ecKey(pki.caKey);
    await pki.#ossl('req', '-x509', '-new', '-key', pki.caKey, '-days', '7', '-subj', `/CN=${name}`, '-out', pki.caCert);
    return pki;
  }

  /** A serving certificate for these IP addresses and DNS names. */
  async server(name: string, cn: string, sans: { ips?: string[]; dns?: string[] }): Promise<KeyPair> {
    const alt = [...(sans.ips ?? []).map((ip) => `IP:${ip}`), ...(sans.dns ?? []).map((d) => `DNS:${d}`)].join(',');
    return this.#sign(name, `/CN=${cn}`, `subjectAltName=${alt}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n`);
  }

  /** A client certificate: `subject` is like `/O=group/CN=user`. */
  async client(name: string, subject: string): Promise<KeyPair> {
    return this.#sign(name, subject, 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  }

  /** The RSA key pair that signs and verifies ServiceAccount tokens. */
  async serviceAccountKeys(): Promise<{ key: string; pub: string }> {
    const key = join(this.dir, 'sa.key');
    const pub = join(this.dir, 'sa.pub');
    await this.#ossl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key);
    await this.#ossl('pkey', '-in', key, '-pubout', '-out', pub);
    return { key, pub };
  }

  /** A kubeconfig for one identity, with the CA and its certificate embedded. */
  async kubeconfig(file: string, server: string, identity: KeyPair, namespace = 'default'): Promise<string> {
    const b64 = async (f: string) => (await readFile(f)).toString('base64');
    await writeFile(
      file,
      `apiVersion: v1
kind: Config
clusters:
- name: pagewright-test
  cluster:
    server: ${server}
    certificate-authority-data: ${await b64(this.caCert)}
users:
- name: user
  user:
    client-certificate-data: ${await b64(identity.cert)}
    client-key-data: ${await b64(identity.key)}
contexts:
- name: pagewright-test
  context:
    cluster: pagewright-test
    user: user
    namespace: ${namespace}
current-context: pagewright-test
`,
      { mode: 0o600 },
    );
    return file;
  }

  async #sign(name: string, subject: string, ext: string): Promise<KeyPair> {
    const p = (suffix: string) => join(this.dir, `${name}.${suffix}`);
    await this.#ecKey(p('key'));
    await this.#ossl('req', '-new', '-key', p('key'), '-subj', subject, '-out', p('csr'));
    await writeFile(p('ext'), ext);
    await this.#ossl(
      'x509',
      '-req',
      '-in',
      p('csr'),
      '-CA',
      this.caCert,
      '-CAkey',
      this.caKey,
      '-CAcreateserial',
      '-days',
      '7',
      '-extfile',
      p('ext'),
      '-out',
      p('crt'),
    );
    return { cert: p('crt'), key: p('key') };
  }

  async #ecKey(file: string): Promise<void> {
    await this.#ossl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file);
  }

  async #ossl(...args: string[]): Promise<void> {
    await run('openssl', args, { cwd: this.dir });
  }
}
