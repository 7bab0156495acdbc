/**
 * The review API (review.pagewright.dev/v1alpha1, preview/review-api.ts) as the CLI calls it:
 * through the user's apiserver with the user's kubeconfig credentials, never a storage token.
 * The apiserver authenticates the user and checks RBAC on the subresource (sites/versions,
 * sites/rollback, jobs/diff, ...) before it forwards; refusals come back as Status objects and
 * are thrown as one-line CliErrors.
 */
import type { IncomingMessage } from 'node:http';
import { REVIEW_API_ROOT as API_ROOT } from '../common/review-api.js';
import { CliError } from './command.js';
import { type KubeTarget, failureOf, kubeRequest, readBody } from './kube-context.js';

/** The review API's path for `rest` in the target's namespace. */
export function reviewPath(namespace: string, rest: string): string {
  return `${API_ROOT}/namespaces/${encodeURIComponent(namespace)}/${rest.replace(/^\/+/, '')}`;
}

export class ReviewClient {
  readonly #target: KubeTarget;

  constructor(target: KubeTarget) {
    this.#target = target;
  }

  /** The raw answer to `method` on `rest` (relative to the namespace), success or not. */
  request(
    method: string,
    rest: string,
    o: { headers?: Record<string, string>; body?: NodeJS.ReadableStream | Buffer | string; signal?: AbortSignal } = {},
  ): Promise<IncomingMessage> {
    return kubeRequest(this.#target, reviewPath(this.#target.namespace, rest), { method, ...o });
  }

  async #ok(method: string, rest: string, o: Parameters<ReviewClient['request']>[2] = {}): Promise<IncomingMessage> {
    const res = await this.request(method, rest, o);
    if ((res.statusCode ?? 0) >= 400) throw await failureOf(res);
    return res;
  }

  /** Pushes a tar.gz as the site's new version; its version (sha256). */
  async pushVersion(site: string, archive: NodeJS.ReadableStream, size: number): Promise<{ version: string }> {
    const res = await this.#ok('POST', `sites/${site}/versions`, {
      body: archive,
      headers: { 'content-type': 'application/gzip', 'content-length': String(size) },
    });
    return versionOf(await readBody(res));
  }

  /** A version of the site (`current` by default) as a tar.gz stream, with its version. */
  async pullVersion(site: string, version = 'current'): Promise<{ version: string; body: IncomingMessage }> {
    const res = await this.#ok('GET', `sites/${site}/versions/${version}`);
    const etag = String(res.headers.etag ?? '').replace(/^"(.*)"$/, '$1');
    if (!/^[a-f0-9]{64}$/.test(etag)) {
      res.resume();
      throw new CliError('the review API answered a pull without the version it sent (no ETag)');
    }
    return { version: etag, body: res };
  }

  /** Makes `to` (default: the version before the current one) the site's current version again. */
  async rollback(site: string, to?: string): Promise<{ version: string; previousVersion: string }> {
    const res = await this.#ok('POST', `sites/${site}/rollback`, {
      body: JSON.stringify(to ? { to } : {}),
      headers: { 'content-type': 'application/json' },
    });
    const body = JSON.parse(await readBody(res)) as { version?: unknown; previousVersion?: unknown };
    if (typeof body.version !== 'string' || typeof body.previousVersion !== 'string')
      throw new CliError('the review API answered a rollback without its versions');
    return { version: body.version, previousVersion: body.previousVersion };
  }

  /** The job's diff.patch. */
  async jobDiff(job: string): Promise<string> {
    return readBody(await this.#ok('GET', `jobs/${job}/diff`), 256 * 1024 * 1024);
  }
}

function versionOf(text: string): { version: string } {
  const body = JSON.parse(text) as { version?: unknown };
  if (typeof body.version !== 'string') throw new CliError('the review API answered a push without a version');
  return { version: body.version };
}
