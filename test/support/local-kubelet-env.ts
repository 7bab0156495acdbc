/**
 * What the local kubelet prepares before starting a container: volumes as per-pod temp
 * directories, the container's environment resolved from the API like a kubelet does, and the
 * mapping of container paths to host paths.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CoreV1Api, V1Container, V1Pod } from '@kubernetes/client-node';
import type { PodContext } from './local-kubelet.js';

export class KubeletPodEnv {
  readonly env: Record<string, string>;
  readonly dirs: string[];
  readonly workingDir: string;
  readonly #paths: Array<[string, string]>;

  private constructor(env: Record<string, string>, dirs: string[], workingDir: string, paths: Array<[string, string]>) {
    this.env = env;
    this.dirs = dirs;
    this.workingDir = workingDir;
    this.#paths = paths;
  }

  /** Rewrites a value that is (or starts with) a container path to the host path. */
  mapPath(value: string): string {
    for (const [from, to] of this.#paths) {
      if (value === from) return to;
      if (value.startsWith(`${from}/`)) return to + value.slice(from.length);
    }
    return value;
  }

  static async resolve(
    core: CoreV1Api,
    pod: V1Pod,
    container: V1Container,
    ctx: PodContext,
    nodeName: string,
    runtimePaths: Record<string, string>,
  ): Promise<KubeletPodEnv> {
    const namespace = ctx.namespace;
    const secrets = new Map<string, Record<string, string>>();
    const configMaps = new Map<string, Record<string, string>>();
    const secret = async (name: string) => {
      if (!secrets.has(name)) {
        const s = await core.readNamespacedSecret({ name, namespace }).catch(() => null);
        if (!s) throw new Error(`secret "${name}" not found`);
        secrets.set(name, Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')])));
      }
      return secrets.get(name)!;
    };
    const configMap = async (name: string) => {
      if (!configMaps.has(name)) {
        const c = await core.readNamespacedConfigMap({ name, namespace }).catch(() => null);
        if (!c) throw new Error(`configmap "${name}" not found`);
        configMaps.set(name, c.data ?? {});
      }
      return configMaps.get(name)!;
    };

    const dirs: string[] = [];
    const volumeDirs = new Map<string, string>();
    for (const volume of pod.spec?.volumes ?? []) {
      const dir = await mkdtemp(join(tmpdir(), `pw-pod-${ctx.podName}-${volume.name}-`));
      dirs.push(dir);
      volumeDirs.set(volume.name, dir);
      const files = volume.secret?.secretName
        ? await secret(volume.secret.secretName)
        : volume.configMap?.name
          ? await configMap(volume.configMap.name)
          : null;
      if (files) {
        const items = (volume.secret?.items ?? volume.configMap?.items ?? []).map((i) => [i.key, i.path] as const);
        const selected = items.length > 0 ? items : Object.keys(files).map((k) => [k, k] as const);
        for (const [key, path] of selected) await writeFile(join(dir, path), files[key] ?? '');
      } else if (!volume.emptyDir) {
        throw new Error(`volume "${volume.name}": only emptyDir, secret and configMap volumes are supported locally`);
      }
    }
    const paths: Array<[string, string]> = Object.entries(runtimePaths);
    for (const mount of container.volumeMounts ?? []) {
      const dir = volumeDirs.get(mount.name);
      if (!dir) throw new Error(`volumeMount "${mount.name}" has no volume`);
      paths.push([mount.mountPath.replace(/\/+$/, ''), mount.subPath ? join(dir, mount.subPath) : dir]);
    }
    // longest container path first, so /work/site maps before /work
    paths.sort(([a], [b]) => b.length - a.length);
    const mapper = new KubeletPodEnv({}, dirs, '', paths);

    const field = (path: string): string => {
      const values: Record<string, string | undefined> = {
        'metadata.name': ctx.podName,
        'metadata.namespace': namespace,
        'metadata.uid': ctx.uid,
        'spec.nodeName': nodeName,
        'spec.serviceAccountName': pod.spec?.serviceAccountName,
        'status.podIP': ctx.podIP,
        'status.hostIP': '127.0.0.1',
      };
      const label = /^metadata\.labels\['(.+)'\]$/.exec(path)?.[1];
      const value = label ? pod.metadata?.labels?.[label] : values[path];
      if (value === undefined) throw new Error(`fieldRef ${path} is not supported by the local kubelet`);
      return value;
    };

    const env: Record<string, string> = {};
    for (const from of container.envFrom ?? []) {
      const source = from.secretRef?.name ? await secret(from.secretRef.name) : from.configMapRef?.name ? await configMap(from.configMapRef.name) : {};
      for (const [k, v] of Object.entries(source)) env[(from.prefix ?? '') + k] = v;
    }
    for (const e of container.env ?? []) {
      const ref = e.valueFrom;
      let value: string | undefined;
      if (!ref) value = e.value ?? '';
      else if (ref.secretKeyRef) {
        const data = await secret(ref.secretKeyRef.name!).catch((err: unknown) => (ref.secretKeyRef!.optional ? {} : Promise.reject(err)));
        value = (data as Record<string, string>)[ref.secretKeyRef.key];
        if (value === undefined && !ref.secretKeyRef.optional) throw new Error(`key "${ref.secretKeyRef.key}" not found in secret "${ref.secretKeyRef.name}"`);
      } else if (ref.configMapKeyRef) {
        const data = await configMap(ref.configMapKeyRef.name!).catch((err: unknown) => (ref.configMapKeyRef!.optional ? {} : Promise.reject(err)));
        value = (data as Record<string, string>)[ref.configMapKeyRef.key];
        if (value === undefined && !ref.configMapKeyRef.optional) throw new Error(`key "${ref.configMapKeyRef.key}" not found in configmap "${ref.configMapKeyRef.name}"`);
      } else if (ref.fieldRef) value = field(ref.fieldRef.fieldPath);
      else throw new Error(`env ${e.name}: only value, secretKeyRef, configMapKeyRef and fieldRef are supported locally`);
      if (value !== undefined) env[e.name] = mapper.mapPath(value);
    }
    let workingDir = container.workingDir ? mapper.mapPath(container.workingDir) : '';
    if (!workingDir || workingDir === container.workingDir) {
      workingDir = await mkdtemp(join(tmpdir(), `pw-pod-${ctx.podName}-cwd-`));
      dirs.push(workingDir);
    }
    return new KubeletPodEnv(env, dirs, workingDir, paths);
  }
}
