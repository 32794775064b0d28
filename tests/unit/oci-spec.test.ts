// invoker/oci/spec.ts: the container's isolation and limits. runc adds nothing of its own, so a
// namespace, limit or mask missing here is missing in every function container.
import { buildSpec, cpuSharesFor, SpecOptions } from '../../invoker/oci/spec';

const opts = (over: Partial<SpecOptions> = {}): SpecOptions => ({
  hostname: 'fn-hello-1',
  args: ['/usr/bin/node', '/opt/kiln/bootstrap.js'],
  env: { KILN_HANDLER: 'index.handler', GREETING: 'a=b c' },
  memoryMB: 256,
  pidsLimit: 64,
  tmpSizeMB: 32,
  cgroupsPath: '/kiln/fn-hello-1',
  socketDir: '/var/lib/kiln/containers/c1/sock',
  ...over,
});

type Mount = { destination: string; type?: string; source?: string; options?: string[] };
const mount = (spec: ReturnType<typeof buildSpec>, dest: string): Mount | undefined =>
  (spec.mounts as Mount[]).find((m) => m.destination === dest);

describe('cpuSharesFor', () => {
  it('is proportional to memory with 256 MB at the kernel default 1024', () => {
    expect(cpuSharesFor(256)).toBe(1024);
    expect(cpuSharesFor(512)).toBe(2048);
    expect(cpuSharesFor(128)).toBe(512);
    expect(cpuSharesFor(1024)).toBe(4096);
    expect(cpuSharesFor(4096)).toBe(16384);
  });

  it('never goes below the kernel minimum of 2 and returns integers', () => {
    expect(cpuSharesFor(0)).toBe(2);
    expect(cpuSharesFor(0.1)).toBe(2);
    expect(cpuSharesFor(1)).toBe(4);
    for (const mb of [1, 3, 64, 100, 333, 777]) {
      const s = cpuSharesFor(mb);
      expect(Number.isInteger(s)).toBe(true);
      expect(s).toBeGreaterThanOrEqual(2);
    }
  });

  it('is monotonic in memory', () => {
    let prev = 0;
    for (let mb = 0; mb <= 4096; mb += 64) {
      const s = cpuSharesFor(mb);
      expect(s).toBeGreaterThanOrEqual(prev);
      prev = s;
    }
  });
});

describe('buildSpec', () => {
  it('creates every isolating namespace, and no user namespace surprise', () => {
    const types = buildSpec(opts()).linux.namespaces.map((n) => n.type);
    expect(types).toEqual(expect.arrayContaining(['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup']));
    expect(new Set(types).size).toBe(types.length); // no duplicates (runc refuses them)
  });

  it.each([64, 256, 512, 1536])('limits memory to exactly memoryMB MiB with no swap (%i MB)', (memoryMB) => {
    const { memory } = buildSpec(opts({ memoryMB })).linux.resources;
    expect(memory.limit).toBe(memoryMB * 1024 * 1024);
    // OCI "swap" is memory+swap: equal to the limit means no swap at all.
    expect(memory.swap).toBe(memory.limit);
  });

  it('gives cpu shares proportional to memory', () => {
    expect(buildSpec(opts({ memoryMB: 256 })).linux.resources.cpu.shares).toBe(1024);
    expect(buildSpec(opts({ memoryMB: 512 })).linux.resources.cpu.shares).toBe(2048);
    expect(buildSpec(opts({ memoryMB: 128 })).linux.resources.cpu.shares).toBe(512);
  });

  it('sets the pids limit from the options', () => {
    expect(buildSpec(opts({ pidsLimit: 64 })).linux.resources.pids.limit).toBe(64);
    expect(buildSpec(opts({ pidsLimit: 500 })).linux.resources.pids.limit).toBe(500);
  });

  it('makes the root filesystem read-only', () => {
    const spec = buildSpec(opts());
    expect(spec.root.readonly).toBe(true);
    expect(spec.root.path).toBe('rootfs');
  });

  it('mounts /tmp as a size-limited tmpfs', () => {
    const tmp = mount(buildSpec(opts({ tmpSizeMB: 48 })), '/tmp');
    expect(tmp).toBeDefined();
    expect(tmp!.type).toBe('tmpfs');
    expect(tmp!.options).toContain('size=48m');
    expect(tmp!.options!.filter((o) => o.startsWith('size='))).toEqual(['size=48m']);
  });

  it('bind-mounts the socket folder at /run/kiln', () => {
    const m = mount(buildSpec(opts({ socketDir: '/srv/kiln/c9/sock' })), '/run/kiln');
    expect(m).toBeDefined();
    expect(m!.type).toBe('bind');
    expect(m!.source).toBe('/srv/kiln/c9/sock');
    expect(m!.options).toEqual(expect.arrayContaining([expect.stringMatching(/^r?bind$/)]));
  });

  it('mounts /proc and a read-only /sys', () => {
    const spec = buildSpec(opts());
    expect(mount(spec, '/proc')?.type).toBe('proc');
    expect(mount(spec, '/sys')?.options).toContain('ro');
    expect(mount(spec, '/sys/fs/cgroup')?.options).toContain('ro');
  });

  it('denies all devices by default', () => {
    const devices = buildSpec(opts()).linux.resources.devices;
    expect(devices[0]).toEqual({ allow: false, access: 'rwm' });
    expect(devices.filter((d) => d.allow)).toHaveLength(0);
  });

  it('masks sensitive /proc files and makes /proc/sys read-only', () => {
    const { maskedPaths, readonlyPaths } = buildSpec(opts()).linux;
    expect(maskedPaths).toEqual(expect.arrayContaining(['/proc/kcore', '/proc/keys']));
    expect(readonlyPaths).toEqual(expect.arrayContaining(['/proc/sys', '/proc/sysrq-trigger']));
  });

  it('forbids gaining privileges', () => {
    expect(buildSpec(opts()).process.noNewPrivileges).toBe(true);
  });

  it('renders env entries as KEY=VALUE, keeping = and spaces in values', () => {
    const env = buildSpec(opts({ env: { A: '1', GREETING: 'a=b c', EMPTY: '' } })).process.env;
    expect(env).toEqual(expect.arrayContaining(['A=1', 'GREETING=a=b c', 'EMPTY=']));
    expect(env.some((e) => e.startsWith('PATH='))).toBe(true);
    for (const e of env) expect(e).toMatch(/^[A-Za-z_][A-Za-z0-9_]*=/);
  });

  it('passes args, hostname and cgroups path through', () => {
    const spec = buildSpec(opts({ hostname: 'h1', args: ['/bin/sh', '-c', 'true'], cgroupsPath: '/kiln/x' }));
    expect(spec.process.args).toEqual(['/bin/sh', '-c', 'true']);
    expect(spec.hostname).toBe('h1');
    expect(spec.linux.cgroupsPath).toBe('/kiln/x');
  });

  it('is plain JSON (what runc reads as config.json)', () => {
    const spec = buildSpec(opts());
    expect(JSON.parse(JSON.stringify(spec))).toEqual(spec);
  });
});
