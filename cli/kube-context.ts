/**
 * The cluster a command talks to, as kubectl resolves it: the kubeconfig from --kubeconfig, else
 * $KUBECONFIG, else ~/.kube/config (client-node's loadFromDefault), its current context or
 * --context, and the namespace from -n, else the context's, else `default`. The user's own
 * credentials, whatever the kubeconfig holds (a token, a client certificate, an exec plugin):
 * requests outside client-node's generated clients get them from applyToHTTPSOptions.
 */
import type { IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { type RequestOptions, request as httpsRequest } from 'node:https';
import { ApiException, KubeConfig } from '@kubernetes/client-node';
import { CliError, statusMessage } from './command.js';

export interface KubeTarget {
  kc: KubeConfig;
  namespace: string;
  /** The apiserver's base URL, without a trailing slash. */
  server: string;
}

/** -n wins, then the context's namespace, then `default`. */
export function resolveNamespace(flag: string | undefined, contextNamespace: string | undefined): string {
  return flag || contextNamespace || 'default';
}

export function loadKube(o: { kubeconfig?: string; context?: string; namespace?: string }): KubeTarget {
  const kc = new KubeConfig();
  try {
    if (o.kubeconfig) kc.loadFromFile(o.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new CliError(`cannot load the kubeconfig${o.kubeconfig ? ` ${o.kubeconfig}` : ''}: ${(err as Error).message}`);
  }
  if (o.context) {
    if (!kc.getContextObject(o.context)) throw new CliError(`context "${o.context}" does not exist in the kubeconfig`);
    kc.setCurrentContext(o.context);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new CliError('the kubeconfig has no current context (set one, or pass --context)');
  const namespace = resolveNamespace(o.namespace, kc.getContextObject(kc.getCurrentContext())?.namespace);
  return { kc, namespace, server: cluster.server.replace(/\/+$/, '') };
}

/**
 * A request to the apiserver with the user's credentials (client certificate, token, exec
 * plugin, CA), streamed both ways. The response is whatever the server answered: callers check
 * the status.
 */
export async function kubeRequest(
  target: KubeTarget,
  path: string,
  o: { method: string; headers?: Record<string, string>; body?: NodeJS.ReadableStream | Buffer | string; signal?: AbortSignal },
): Promise<IncomingMessage> {
  const url = new URL(target.server + path);
  const opts: RequestOptions = { method: o.method, headers: {} };
  await target.kc.applyToHTTPSOptions(opts);
  opts.headers = { ...(opts.headers as Record<string, string>), ...o.headers };
  if (o.signal) opts.signal = o.signal;
  const send = url.protocol === 'http:' ? httpRequest : httpsRequest;
  return new Promise<IncomingMessage>((resolve, reject) => {
    const req = send(url, opts, resolve);
    req.on('error', (err) => reject(unreachable(target, err)));
    const body = o.body;
    if (body === undefined) req.end();
    else if (typeof body === 'string' || Buffer.isBuffer(body)) req.end(body);
    else {
      body.on('error', (err: Error) => req.destroy(err));
      body.pipe(req);
    }
  });
}

/** Reads a response whole (bounded: error bodies and JSON answers are small). */
export async function readBody(res: IncomingMessage, max = 16 * 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    size += (chunk as Buffer).length;
    if (size > max) throw new CliError(`the answer is larger than ${max} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A response that is not a success, as the CliError its Status says. */
export async function failureOf(res: IncomingMessage): Promise<CliError> {
  return new CliError(statusMessage(res.statusCode ?? 0, await readBody(res, 1024 * 1024).catch(() => '')));
}

function unreachable(target: KubeTarget, err: Error): Error {
  if (err.name === 'AbortError') return err;
  return new CliError(`cannot reach the cluster at ${target.server}: ${err.message}`);
}

/** Any error of a command as its one line: client-node's ApiException by its Status message. */
export function errorLine(err: unknown): string {
  if (err instanceof ApiException) {
    const body = typeof err.body === 'string' ? err.body : JSON.stringify(err.body ?? '');
    return statusMessage(err.code, body);
  }
  const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } } | null;
  const sys = e?.cause?.code ?? e?.code;
  if ((typeof sys === 'string' && /^E[A-Z]+$/.test(sys)) || (e?.message === 'fetch failed' && e.cause))
    return `cannot reach the cluster: ${String(e?.cause?.message ?? e?.message)}`;
  return err instanceof Error ? err.message : String(err);
}
