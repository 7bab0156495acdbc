/**
 * The oldest Kubernetes the manager runs on, decided from the apiserver's /version. Runner pods
 * run the agent as a native sidecar (an init container with restartPolicy Always,
 * manager/pod-spec.ts): on by default from Kubernetes 1.29 (beta; GA in 1.33). Below that the
 * apiserver drops the field, the agent becomes a plain init container that never exits, and
 * every runner pod hangs in Init until its deadline. The CRD's validation rules (CEL
 * x-kubernetes-validations: the immutable spec fields) are GA from 1.29 too. So the manager
 * refuses to start below it, naming both versions, rather than accept jobs it cannot run.
 * Pure: the /version answer in, the verdict out.
 */

export const MIN_KUBERNETES = { major: 1, minor: 29 } as const;

/** What GET /version answers (client-node's VersionInfo), as far as this reads it. */
export interface ServerVersion {
  major?: string;
  minor?: string;
  gitVersion?: string;
}

export type VersionVerdict = { ok: true; version: string } | { ok: false; message: string };

export function kubernetesVersionVerdict(info: ServerVersion, min: { major: number; minor: number } = MIN_KUBERNETES): VersionVerdict {
  const required = `${min.major}.${min.minor}`;
  const found = parse(info);
  const shown = info.gitVersion || `${info.major ?? '?'}.${info.minor ?? '?'}`;
  if (!found)
    return {
      ok: false,
      message: `cannot tell the Kubernetes version from the apiserver's /version (major ${JSON.stringify(info.major ?? '')}, minor ${JSON.stringify(info.minor ?? '')}, gitVersion ${JSON.stringify(info.gitVersion ?? '')}); Pagewright needs Kubernetes >= ${required}`,
    };
  if (found.major < min.major || (found.major === min.major && found.minor < min.minor))
    return {
      ok: false,
      message: `Kubernetes ${shown} is too old: Pagewright needs Kubernetes >= ${required} (runner pods run the agent as a native sidecar container)`,
    };
  return { ok: true, version: shown };
}

/** major/minor as the apiserver reports them (managed clusters add a suffix: "29+"), else from gitVersion ("v1.29.3-gke.1"). */
function parse(info: ServerVersion): { major: number; minor: number } | null {
  const major = /^(\d+)/.exec(info.major ?? '')?.[1];
  const minor = /^(\d+)/.exec(info.minor ?? '')?.[1];
  if (major && minor) return { major: Number(major), minor: Number(minor) };
  const git = /^v?(\d+)\.(\d+)/.exec(info.gitVersion ?? '');
  return git ? { major: Number(git[1]), minor: Number(git[2]) } : null;
}
