// The cgroup v2 side of ContainerCgroup on a real v2 hierarchy: this host's is the hybrid one
// at /sys/fs/cgroup/unified (no controllers, but every v2 cgroup has cgroup.freeze,
// cgroup.events, cgroup.procs and cpu.stat); a pure v2 host's is /sys/fs/cgroup itself. The
// freezer, the process count, CPU time and the removal of a tree (killing what is left in it).
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ContainerCgroup, removeCgroupTree } from '../../invoker/cgroups';

const V2_ROOT = ['/sys/fs/cgroup', '/sys/fs/cgroup/unified'].find((d) => fs.existsSync(path.join(d, 'cgroup.controllers')));
const parent = `kiln-test-v2-${randomBytes(4).toString('hex')}`;
const rel = `${parent}/c1`;
let child: ChildProcess | undefined;
let ticks = 0; // dots the child has written

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterAll(async () => {
  if (!V2_ROOT) return;
  await removeCgroupTree(parent, 2, V2_ROOT);
  child?.kill('SIGKILL');
});

(V2_ROOT ? test : test.skip)('cgroup v2: freeze stops every process of the cgroup, thaw resumes it, removal kills and removes', async () => {
  const dir = path.join(V2_ROOT!, rel);
  fs.mkdirSync(dir, { recursive: true });
  child = spawn(process.execPath, ['-e', "setInterval(() => process.stdout.write('.'), 5)"], { stdio: ['ignore', 'pipe', 'inherit'] });
  child.stdout!.on('data', (d: Buffer) => (ticks += d.length));
  const exited = new Promise((r) => child!.once('exit', r));
  fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(child.pid));
  const cg = new ContainerCgroup(rel, 2, V2_ROOT);
  try {
    expect(cg.processCount()).toBe(1);
    while (ticks < 3) await sleep(10); // it runs
    expect(cg.cpuUsageNs()).toBeGreaterThan(0);

    const freezeMs = await cg.setFrozen(true);
    expect(freezeMs).toBeGreaterThanOrEqual(0);
    expect(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8')).toMatch(/^frozen 1$/m);
    await sleep(20); // output already in the pipe arrives
    const atFreeze = ticks;
    await sleep(200);
    expect(ticks).toBe(atFreeze); // 40 intervals passed: nothing ran

    await cg.setFrozen(false);
    expect(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8')).toMatch(/^frozen 0$/m);
    const deadline = Date.now() + 5_000;
    while (ticks === atFreeze && Date.now() < deadline) await sleep(10);
    expect(ticks).toBeGreaterThan(atFreeze);
  } finally {
    cg.close();
  }

  await removeCgroupTree(parent, 2, V2_ROOT);
  await exited;
  expect(fs.existsSync(path.join(V2_ROOT!, parent))).toBe(false);
});
