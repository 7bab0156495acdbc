/**
 * Who is calling the review API: the kube-apiserver's aggregation layer authenticated the user
 * (with whatever the user's kubeconfig holds: a token, a client certificate, an exec plugin)
 * and authorized the API path, then proxied the request here over TLS with a client
 * certificate of its front-proxy CA, naming the user in request headers (X-Remote-User,
 * X-Remote-Group, X-Remote-Extra-*). Those headers are believed only on a connection whose
 * client certificate that CA signed, with a common name the apiserver's config allows; anything
 * else is 401 (Kubernetes' request-header authenticator, k8s.io/apiserver
 * pkg/authentication/request/headerrequest, in small).
 *
 * The CA, the allowed names and the header names come from the ConfigMap the apiserver
 * publishes for extension servers, kube-system/extension-apiserver-authentication (readable
 * through the Role extension-apiserver-authentication-reader), so they follow the cluster's
 * own settings.
 *
 * This authenticates only: the front proxy is not an authorizing proxy (kubernetes #61349), so
 * what the caller may do is asked of the apiserver again (access-review.ts).
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { CoreV1Api } from '@kubernetes/client-node';
import { z } from 'zod';
import { PagewrightError } from '../common/errors.js';

export interface RequestHeaderConfig {
  /** PEM: the CA whose client certificates may speak for users. */
  clientCa: string;
  /** Common names the front proxy's certificate may have (empty: any the CA signed). */
  allowedNames: string[];
  usernameHeaders: string[];
  groupHeaders: string[];
  extraHeaderPrefixes: string[];
}

/** The authenticated user the request acts for, as a SubjectAccessReview names it. */
export interface Caller {
  user: string;
  groups: string[];
  extra: Record<string, string[]>;
}

const ConfigMapLists = z.array(z.string());

/** Reads kube-system/extension-apiserver-authentication; fails when the cluster has no aggregation layer. */
export async function loadRequestHeaderConfig(core: CoreV1Api): Promise<RequestHeaderConfig> {
  const cm = await core.readNamespacedConfigMap({ namespace: 'kube-system', name: 'extension-apiserver-authentication' });
  const data = cm.data ?? {};
  const clientCa = data['requestheader-client-ca-file'];
  if (!clientCa) {
    throw new PagewrightError(
      'InvalidConfig',
      'the cluster has no aggregation layer: kube-system/extension-apiserver-authentication names no requestheader-client-ca-file (kube-apiserver needs --requestheader-client-ca-file and --proxy-client-cert-file)',
    );
  }
  const list = (key: string, fallback: string[]) => {
    const raw = data[key];
    return raw ? ConfigMapLists.parse(JSON.parse(raw)) : fallback;
  };
  return {
    clientCa,
    allowedNames: list('requestheader-allowed-names', []),
    usernameHeaders: list('requestheader-username-headers', ['X-Remote-User']),
    groupHeaders: list('requestheader-group-headers', ['X-Remote-Group']),
    extraHeaderPrefixes: list('requestheader-extra-headers-prefix', ['X-Remote-Extra-']),
  };
}

/** The caller, or 401 Unauthorized: only the front proxy may name a user. Pure apart from the socket's TLS state. */
export function callerOf(req: IncomingMessage, config: RequestHeaderConfig): Caller {
  const socket = req.socket as Partial<TLSSocket>;
  if (!socket.encrypted || !socket.authorized) {
    throw new PagewrightError(
      'Unauthorized',
      'the review API answers the kube-apiserver only (no client certificate of its front-proxy CA)',
    );
  }
  const cn = socket.getPeerCertificate?.()?.subject?.CN;
  if (config.allowedNames.length > 0 && (typeof cn !== 'string' || !config.allowedNames.includes(cn))) {
    throw new PagewrightError('Unauthorized', `the client certificate's name ${JSON.stringify(cn)} is not an allowed front proxy`);
  }
  const values = (name: string) => req.headersDistinct[name.toLowerCase()] ?? [];
  const user = config.usernameHeaders.map((h) => values(h)[0]?.trim()).find((v) => v);
  if (!user) throw new PagewrightError('Unauthorized', 'the front proxy named no user');
  const groups = config.groupHeaders.flatMap((h) => values(h)).filter((g) => g.length > 0);
  const extra: Record<string, string[]> = {};
  for (const [header, headerValues] of Object.entries(req.headersDistinct)) {
    const prefix = config.extraHeaderPrefixes.find((p) => header.startsWith(p.toLowerCase()));
    if (!prefix || !headerValues) continue;
    // the key is lowercased and percent-encoded by the apiserver (header names are case-insensitive)
    const key = decodeURIComponent(header.slice(prefix.length));
    extra[key] = [...(extra[key] ?? []), ...headerValues];
  }
  return { user, groups, extra };
}
