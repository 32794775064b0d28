// Generates the OCI runtime spec (config.json) of a function container. runc applies exactly
// what this says and adds no hardening of its own (Docker, containerd and Podman supply theirs),
// so every namespace, limit and restriction is here. See docs/threat-model.md.
import { seccompProfile } from './seccomp';

/** Container root is this host uid/gid (unprivileged), with ID_COUNT ids mapped from it. */
export const HOST_ROOT_ID = 100_000;
export const ID_COUNT = 65_536;
export interface SpecOptions {
  hostname: string;
  args: string[];
  env: Record<string, string>;
  memoryMB: number;
  pidsLimit: number;
  tmpSizeMB: number;
  cgroupsPath: string;
  socketDir: string; // host folder bind-mounted at /run/kiln
  codeDir?: string; // for stem cells: a shared host mount point that becomes /function
}

/** CPU shares in proportion to memory, as OpenWhisk does: 256 MB gets the kernel default 1024. */
export function cpuSharesFor(memoryMB: number): number {
  return Math.max(2, Math.round((memoryMB / 256) * 1024));
}

export function buildSpec(o: SpecOptions) {
  const memory = o.memoryMB * 2 ** 20;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: o.args,
      env: ['PATH=/usr/bin:/bin', 'HOME=/tmp', ...Object.entries(o.env).map(([k, v]) => `${k}=${v}`)],
      cwd: '/function',
      noNewPrivileges: true,
      // No capabilities at all: a function needs none (containerd's default has 14).
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      rlimits: [
        { type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 },
        { type: 'RLIMIT_CORE', hard: 0, soft: 0 },
      ],
      oomScoreAdj: 500, // under memory pressure the host kills function processes first
    },
    root: { path: 'rootfs', readonly: true },
    hostname: o.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', `size=${o.tmpSizeMB}m`] },
      { destination: '/run/kiln', type: 'bind', source: o.socketDir, options: ['rbind', 'rw', 'nosuid', 'nodev', 'noexec'] },
      // rslave: the code the host mounts here later (specialisation) propagates in, read-only.
      ...(o.codeDir ? [{ destination: '/function', type: 'bind', source: o.codeDir, options: ['rbind', 'ro', 'rslave', 'nosuid', 'nodev'] }] : []),
    ],
    linux: {
      namespaces: ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup', 'user'].map((type) => ({ type })),
      uidMappings: [{ containerID: 0, hostID: HOST_ROOT_ID, size: ID_COUNT }],
      gidMappings: [{ containerID: 0, hostID: HOST_ROOT_ID, size: ID_COUNT }],
      seccomp: seccompProfile(),
      cgroupsPath: o.cgroupsPath,
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        // swap equal to the limit: memory+swap may not exceed memory, i.e. no swap at all.
        memory: { limit: memory, swap: memory, swappiness: 0 },
        cpu: { shares: cpuSharesFor(o.memoryMB) },
        pids: { limit: o.pidsLimit },
      },
      maskedPaths: [
        '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
        '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
