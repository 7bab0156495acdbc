/**
 * The real node's container runtime: a second containerd (Debian's, the one docker.io brings)
 * with its own config, root, state and socket, so it never meets docker's, the CRI plugin on, and
 * Debian's CNI plugins wiring pods to the node's bridge. Driven with `ctr`, containerd's own CLI.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** The CRI plugin keeps Kubernetes' containers and images in this containerd namespace. */
const NAMESPACE = 'k8s.io';

export interface NodeContainer {
  id: string;
  /** `sandbox` (the pod's pause container) or `container` */
  kind: string;
  name: string;
  pod: string;
  namespace: string;
  podUid: string;
  image: string;
  /** RUNNING, STOPPED, ... or `none` when containerd has the container but no task (never started or removed) */
  status: string;
  pid: number;
}

export interface NetworkOptions {
  bridge: string;
  podCidr: string;
  gateway: string;
  pauseImage: string;
}

export class Containerd {
  readonly socket: string;
  readonly configPath: string;

  constructor(
    readonly dir: string,
    private readonly net: NetworkOptions,
  ) {
    this.socket = join(dir, 'containerd.sock');
    this.configPath = join(dir, 'config.toml');
  }

  async writeConfig(): Promise<void> {
    const cniDir = join(this.dir, 'cni');
    await mkdir(cniDir, { recursive: true });
    await writeFile(
      this.configPath,
      `version = 2
root = "${join(this.dir, 'root')}"
state = "${join(this.dir, 'state')}"
# snapshotters this machine has no use for only log errors
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "${this.socket}"
[ttrpc]
  address = "${this.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "${join(this.dir, 'opt')}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/${this.net.pauseImage}"
  # the pause container asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${cniDir}"
`,
    );
    // the bridge exists already (cluster.ts) with the gateway address: the plugin adopts it
    await writeFile(
      join(cniDir, '10-pagewright.conflist'),
      JSON.stringify(
        {
          cniVersion: '1.0.0',
          name: 'pagewright',
          plugins: [
            {
              type: 'bridge',
              bridge: this.net.bridge,
              isGateway: true,
              ipMasq: true,
              // a pod reaching a Service that leads back to itself
              hairpinMode: true,
              ipam: {
                type: 'host-local',
                ranges: [[{ subnet: this.net.podCidr, gateway: this.net.gateway }]],
                routes: [{ dst: '0.0.0.0/0' }],
                dataDir: join(this.dir, 'ipam'),
              },
            },
            { type: 'portmap', capabilities: { portMappings: true } },
            // docker sets the FORWARD policy to DROP: this accepts what pods send (and replies)
            { type: 'firewall', backend: 'iptables' },
          ],
        },
        null,
        2,
      ),
    );
  }

  async ctr(args: string[]): Promise<string> {
    const { stdout } = await run('ctr', ['--address', this.socket, '--namespace', NAMESPACE, ...args], { maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  }

  async ping(): Promise<boolean> {
    return this.ctr(['version']).then(
      () => true,
      () => false,
    );
  }

  /** Imports a `docker save` stream (images keep their names: `x:1` becomes `docker.io/library/x:1`). */
  async importFrom(command: string, args: string[]): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const source = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      const sink = spawn('ctr', ['--address', this.socket, '--namespace', NAMESPACE, 'images', 'import', '-'], {
        stdio: ['pipe', 'ignore', 'pipe'],
      });
      let errors = '';
      source.stderr.on('data', (c: Buffer) => (errors += c.toString()));
      sink.stderr.on('data', (c: Buffer) => (errors += c.toString()));
      source.stdout.pipe(sink.stdin);
      let pending = 2;
      const done = (what: string) => (code: number | null) => {
        if (code !== 0) reject(new Error(`${what} failed (${code}): ${errors}`));
        else if (--pending === 0) resolve();
      };
      source.on('close', done(command));
      sink.on('close', done('ctr images import'));
      source.on('error', reject);
      sink.on('error', reject);
    });
  }

  async images(): Promise<string[]> {
    return (await this.ctr(['images', 'ls', '-q'])).split('\n').filter(Boolean);
  }

  /** Containers on the node, from containerd's own records: what a kubelet really left running. */
  async containers(podUid?: string): Promise<NodeContainer[]> {
    const filter = podUid ? [`labels."io.kubernetes.pod.uid"==${podUid}`] : [];
    const ids = (await this.ctr(['containers', 'ls', '-q', ...filter])).split('\n').filter(Boolean);
    const tasks = new Map<string, { pid: number; status: string }>();
    for (const line of (await this.ctr(['tasks', 'ls'])).split('\n').slice(1)) {
      const [id, pid, status] = line.trim().split(/\s+/);
      if (id) tasks.set(id, { pid: Number(pid), status: status ?? '' });
    }
    const found: NodeContainer[] = [];
    for (const id of ids) {
      const info = await this.ctr(['containers', 'info', id]).catch(() => null);
      if (!info) continue; // removed meanwhile
      const parsed = JSON.parse(info) as { Image?: string; Labels?: Record<string, string> };
      const labels = parsed.Labels ?? {};
      const task = tasks.get(id);
      found.push({
        id,
        kind: labels['io.cri-containerd.kind'] ?? '',
        name: labels['io.kubernetes.container.name'] ?? '',
        pod: labels['io.kubernetes.pod.name'] ?? '',
        namespace: labels['io.kubernetes.pod.namespace'] ?? '',
        podUid: labels['io.kubernetes.pod.uid'] ?? '',
        image: parsed.Image ?? '',
        status: task?.status ?? 'none',
        pid: task?.pid ?? 0,
      });
    }
    return found;
  }
}
