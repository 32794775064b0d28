// kiln's side of every measurement, through the real gateway over HTTP, each with the floor it
// is compared with measured next to it (interleaved where the two can run one after another),
// so that both see the same machine at the same moment.
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { cgroupCpuMs, cpuPerCall, cpuSnapshot, CpuSources, processCpuMs, redisCommands, selfCpuMs } from './cpu';
import { DockerPeer, DockerSample } from './docker';
import { BullFloor, DirectClient, EchoFloor, RuncFloor, RuncSample } from './floors';
import { closedLoop, LoadResult } from './load';
import { meminfo } from './machine';
import { Platform, writeHello } from './platform';
import { childrenOf, commandOf, descendants, memoryCgroupOf, Proc, processTable } from '../platform/procs';
import { mean, round, summarize, Summary } from './stats';
import { errMsg, mapLimit, progress, sleep, waitFor } from './util';

export interface Ctx {
  runId: string;
  scratch: string; // where function sources are written
  deadline: number; // Date.now() after which optional work is cut short
}

const srcDir = (c: Ctx) => path.join(c.scratch, 'src');

// ---------------------------------------------------------------- 1. warm latency

export interface WarmLatency {
  warmup: number;
  calls: number;
  kiln: Summary;
  notWarm: number;
  bull: Summary;
  direct: Summary;
  floorP50: number; // bull p50 + direct p50
  floorP99: number;
  directContainer: string;
  breakdown: { records: number; waitMs: Summary; durationMs: Summary; queuedToEndedMs: Summary; outsideRecordMs: Summary };
  redisCommandsPerCall: { kiln: number; floor: number };
}

/** hello, one client, sequential: kiln, a bare BullMQ round trip and a direct socket request in turn. */
export async function warmLatency(p: Platform, bull: BullFloor, fn: string, warmup: number, calls: number): Promise<WarmLatency> {
  progress(`warm latency: ${warmup} warm-up + ${calls} calls, kiln / BullMQ / direct socket interleaved`);
  await p.invokeOk(fn);
  const ids = await p.containers(fn);
  if (ids.length !== 1) throw new Error(`expected one ${fn} container, found ${ids.length}`);
  const direct = new DirectClient(p.socketOf(ids[0]));
  const k: number[] = [];
  const b: number[] = [];
  const d: number[] = [];
  let notWarm = 0;
  const acts: { id: string; ms: number }[] = [];
  try {
    for (let i = 0; i < warmup + calls; i++) {
      const r = await p.invokeOk(fn);
      const bt = await bull.roundTrip();
      const dt = await direct.run();
      if (i < warmup) continue;
      if (r.start !== 'warm') notWarm++;
      k.push(r.ms);
      b.push(bt);
      d.push(dt);
      acts.push({ id: r.activationId!, ms: r.ms });
    }
  } finally {
    direct.close();
  }
  // Where a warm call's time goes, from its activation record (epoch ms: 1 ms resolution).
  const recs = await Promise.all(acts.slice(-100).map(async (a) => ({ a, r: await p.activation(a.id) })));
  const breakdown = {
    records: recs.length,
    waitMs: summarize(recs.map((x) => x.r.waitMs)),
    durationMs: summarize(recs.map((x) => x.r.durationMs)),
    queuedToEndedMs: summarize(recs.map((x) => x.r.endedAt - x.r.queuedAt)),
    outsideRecordMs: summarize(recs.map((x) => x.a.ms - (x.r.endedAt - x.r.queuedAt))),
  };
  // Redis commands per call, kiln against the floor (100 sequential calls each).
  const redis = new Redis({ path: p.redisSocket, maxRetriesPerRequest: 3 });
  let kilnCmds = NaN;
  let floorCmds = NaN;
  try {
    let before = await redisCommands(redis);
    for (let i = 0; i < 100; i++) await p.invokeOk(fn);
    await sleep(50);
    kilnCmds = (await redisCommands(redis)) - before - 1;
    before = await redisCommands(redis);
    for (let i = 0; i < 100; i++) await bull.roundTrip();
    await sleep(50);
    floorCmds = (await redisCommands(redis)) - before - 1;
  } finally {
    redis.disconnect();
  }
  const bs = summarize(b);
  const ds = summarize(d);
  return {
    warmup, calls, kiln: summarize(k), notWarm, bull: bs, direct: ds,
    floorP50: round(bs.p50 + ds.p50), floorP99: round(bs.p99 + ds.p99), directContainer: ids[0],
    breakdown, redisCommandsPerCall: { kiln: round(kilnCmds / 100, 1), floor: round(floorCmds / 100, 1) },
  };
}

export interface IdleWarm {
  idleMs: number;
  warm: Summary;
  otherStarts: number;
  bull: Summary;
  direct: Summary;
  floorP50: number;
  echo: Summary; // one hop between two processes after the same idle
  echoBackToBack: Summary; // and right after another
}

/**
 * Calls each made after `idleMs` of quiet (pause grace longer than that: no freeze): kiln,
 * then the BullMQ floor, then a direct socket request, then a bare one-byte echo between two
 * processes (what one hop costs after the same quiet, and back to back), each after its own
 * quiet period.
 */
export async function idleWarm(p: Platform, bull: BullFloor, fn: string, n: number, idleMs: number, scratch: string): Promise<IdleWarm> {
  progress(`after ${idleMs} ms idle (no freeze): ${n} calls each of kiln, BullMQ floor, direct socket, process echo`);
  await p.invokeOk(fn);
  const ids = await p.containers(fn);
  const echo = await EchoFloor.start(path.join(scratch, 'echo.sock'));
  const direct = new DirectClient(p.socketOf(ids[0]));
  const k: number[] = [];
  const b: number[] = [];
  const d: number[] = [];
  const e: number[] = [];
  const e0: number[] = [];
  let other = 0;
  try {
    for (let i = 0; i < n; i++) {
      await sleep(idleMs);
      const r = await p.invokeOk(fn);
      if (r.start === 'warm') k.push(r.ms);
      else other++;
      await sleep(idleMs);
      b.push(await bull.roundTrip());
      await sleep(idleMs);
      d.push(await direct.run());
      await sleep(idleMs);
      e.push(await echo.roundTrip());
      for (let j = 0; j < 5; j++) e0.push(await echo.roundTrip());
    }
  } finally {
    direct.close();
    echo.close();
  }
  const bs = summarize(b);
  const ds = summarize(d);
  return { idleMs, warm: summarize(k), otherStarts: other, bull: bs, direct: ds, floorP50: round(bs.p50 + ds.p50), echo: summarize(e), echoBackToBack: summarize(e0) };
}

// ---------------------------------------------------------------- 2. throughput

export interface Throughput {
  fn: string;
  how: string;
  kiln: LoadResult;
  kilnStarts: Record<string, number>;
  kilnContainers: number;
  bull: LoadResult;
  cpuMsPerCall: { kiln: Record<string, number>; floor: Record<string, number> };
}

export async function throughput(p: Platform, bull: BullFloor, c: Ctx, clients: number, warmupMs: number, measureMs: number, maxRequests: number): Promise<Throughput> {
  const fn = 'hello-wide';
  await p.deploy(await writeHello(srcDir(c), fn, { concurrency: clients, marker: `kiln-bench ${c.runId}` }));
  await p.invokeOk(fn); // one container first, so the warm-up does not start one per client
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const starts: Record<string, number> = {};
  // CPU used per call by each process on the path, over the measured window.
  const kids = p.children();
  const pidOf = (t: string) => kids.find((k) => k.title.startsWith(t))?.pid;
  const ids = await p.containers(fn);
  const kilnSources: CpuSources = { bench: async () => selfCpuMs() };
  for (const [name, title] of [['gateway', 'kiln-gateway'], ['invoker', 'kiln-invoker'], ['redis', 'redis-server']]) {
    const pid = pidOf(title);
    if (pid) kilnSources[name] = () => processCpuMs(pid);
  }
  for (const id of ids) kilnSources[`container ${id.slice(-4)}`] = () => cgroupCpuMs(`kiln/${p.invokerId}/${id}`);
  let before: Promise<Record<string, number>> = cpuSnapshot(kilnSources);
  progress(`throughput: kiln, ${clients} clients, ${warmupMs / 1000} s warm-up + up to ${measureMs / 1000} s`);
  const kiln = await closedLoop(clients, warmupMs, measureMs, maxRequests, async () => {
    const r = await p.invoke(fn, { name: 'bench' }, agent);
    if (r.status !== 200) throw new Error(`${r.status} ${r.body.slice(0, 200)}`);
    starts[r.start ?? 'none'] = (starts[r.start ?? 'none'] ?? 0) + 1;
  }, { onMeasureStart: () => (before = cpuSnapshot(kilnSources)) });
  const kilnCpu = cpuPerCall(await before, await cpuSnapshot(kilnSources), kiln.completedSinceWarmup);
  agent.destroy();
  const kilnContainers = (await p.containers(fn)).length;
  progress(`throughput: kiln ${kiln.rps} calls/s (${kilnContainers} container(s)), CPU ms/call ${JSON.stringify(kilnCpu)}; BullMQ floor, ${clients} in flight`);
  const floorSources: CpuSources = { bench: async () => selfCpuMs() };
  if (kilnSources.redis) floorSources.redis = kilnSources.redis;
  before = cpuSnapshot(floorSources);
  const b = await closedLoop(clients, Math.min(warmupMs, 1000), Math.min(measureMs, 8000), maxRequests, async () => {
    await bull.roundTrip();
  }, { onMeasureStart: () => (before = cpuSnapshot(floorSources)) });
  const floorCpu = cpuPerCall(await before, await cpuSnapshot(floorSources), b.completedSinceWarmup);
  progress(`throughput: BullMQ floor ${b.rps} round trips/s, CPU ms/call ${JSON.stringify(floorCpu)}`);
  return {
    fn, how: `a copy of hello deployed with "concurrency": ${clients} (one container takes all ${clients} calls at once), one call first, then ${warmupMs / 1000} s of warm-up with ${clients} clients`,
    kiln, kilnStarts: starts, kilnContainers, bull: b, cpuMsPerCall: { kiln: kilnCpu, floor: floorCpu },
  };
}

// ---------------------------------------------------------------- 3. cold start

export interface ColdSample {
  i: number;
  version: number;
  start: string | undefined;
  httpMs: number;
  initMs: number;
  waitMs: number;
  durationMs: number;
  queuedToEndedMs: number; // endedAt − queuedAt of the record
}

export interface Cold {
  iterations: number;
  newVersion: ColdSample[];
  newFunction: ColdSample[];
  floor: RuncSample[];
  docker: DockerSample[];
  dockerError?: string;
  floorThawMs: number[];
  dockerUnpauseMs: number[];
}

async function coldCall(p: Platform, fn: string, i: number, version: number): Promise<ColdSample> {
  const r = await p.invokeOk(fn);
  const rec = await p.activation(r.activationId!);
  return { i, version, start: r.start, httpMs: r.ms, initMs: rec.initMs, waitMs: rec.waitMs, durationMs: rec.durationMs, queuedToEndedMs: rec.endedAt - rec.queuedAt };
}

/**
 * The first call of a new version of hello (the old version's container is retired by that
 * call, as a deploy does), the first call of a new function (nothing retired), a bare runc
 * start of the same root filesystem, and Docker when an engine runs: in turn, each iteration.
 */
export async function coldStarts(p: Platform, floor: RuncFloor, docker: DockerPeer | null, c: Ctx, n: number): Promise<Cold> {
  progress(`cold start: ${n} iterations of kiln new version / kiln new function / runc floor${docker ? ' / Docker' : ''}`);
  const out: Cold = { iterations: n, newVersion: [], newFunction: [], floor: [], docker: [], floorThawMs: [], dockerUnpauseMs: [] };
  const settle = () => sleep(250);
  for (let i = 0; i < n && Date.now() < c.deadline; i++) {
    const v = await p.deploy(await writeHello(srcDir(c), 'hello-cold', { marker: `kiln-bench ${c.runId} cold ${i}` }));
    await settle();
    out.newVersion.push(await coldCall(p, 'hello-cold', i, v.version));
    await settle();
    const fname = `hello-new-${i}`;
    const v2 = await p.deploy(await writeHello(srcDir(c), fname, { marker: `kiln-bench ${c.runId} new ${i}` }));
    await settle();
    out.newFunction.push(await coldCall(p, fname, i, v2.version));
    await settle();
    out.floor.push((await floor.coldStart()).sample);
    if (docker) {
      await settle();
      try {
        out.docker.push((await docker.coldStart(floor.hello.memoryMB, floor.hello.handler)).sample);
      } catch (e) {
        out.dockerError ??= errMsg(e);
      }
    }
    await settle();
  }
  return out;
}

/** Thaw-to-response on a bare runc container (freezer written directly), and Docker unpause. */
export async function thawFloors(floor: RuncFloor, docker: DockerPeer | null, out: Cold, n: number, idleMs: number): Promise<void> {
  progress(`thaw floor: ${n} freeze/thaw + request cycles on a bare runc container${docker ? '; Docker pause/unpause' : ''}`);
  const { id } = await floor.coldStart(true);
  try {
    out.floorThawMs = await floor.thawCycles(id, n, idleMs);
  } finally {
    await floor.destroy(id);
  }
  if (docker) {
    try {
      const d = await docker.coldStart(floor.hello.memoryMB, floor.hello.handler, true);
      try {
        out.dockerUnpauseMs = await docker.unpauseCycles(d.id, d.socket, n, idleMs);
      } finally {
        await docker.remove(d.id);
      }
    } catch (e) {
      out.dockerError ??= errMsg(e);
    }
  }
}

// ---------------------------------------------------------------- 4. prewarm

export interface Prewarm {
  samples: ColdSample[];
  newFunction: ColdSample[];
  waitForStemsMs: number[];
  stemWaitTimeouts: { i: number; states: Record<string, number> }[];
}

/** First call of a new version while a frozen stem cell is ready. */
export async function prewarmStarts(p: Platform, c: Ctx, n: number, stems: number): Promise<Prewarm> {
  progress(`prewarm: ${n} iterations (new version of hello-pw with ${stems} frozen stem cells ready)`);
  const out: Prewarm = { samples: [], newFunction: [], waitForStemsMs: [], stemWaitTimeouts: [] };
  const stemsReady = async (i: number) => {
    const t = Date.now();
    let last: Record<string, number> = {};
    const ok = await waitFor('stem cells to be frozen and ready', async () => {
      last = await p.containerStates();
      return (last.prewarm ?? 0) >= stems && (last.starting ?? 0) === 0 && (last.removing ?? 0) === 0;
    }, 10_000, 25).then(() => true, () => false);
    out.waitForStemsMs.push(Date.now() - t);
    if (!ok) {
      out.stemWaitTimeouts.push({ i, states: last });
      progress(`prewarm: stems not ready after 10 s at iteration ${i}: ${JSON.stringify(last)}`);
    }
    await sleep(100);
  };
  for (let i = 0; i < n && Date.now() < c.deadline; i++) {
    const v = await p.deploy(await writeHello(srcDir(c), 'hello-pw', { marker: `kiln-bench ${c.runId} prewarm ${i}` }));
    await stemsReady(i);
    out.samples.push(await coldCall(p, 'hello-pw', i, v.version));
    // The same for the first call of a new function: nothing is retired by it.
    const fname = `hello-pwnew-${i}`;
    const v2 = await p.deploy(await writeHello(srcDir(c), fname, { marker: `kiln-bench ${c.runId} pwnew ${i}` }));
    await stemsReady(i);
    out.newFunction.push(await coldCall(p, fname, i, v2.version));
  }
  return out;
}

// ---------------------------------------------------------------- 5. thaw

export interface Thaw {
  idleMs: number;
  attempts: number;
  thawed: { httpMs: number; initMs: number }[];
  otherStarts: Record<string, number>;
}

export async function thawStarts(p: Platform, fn: string, n: number, idleMs: number): Promise<Thaw> {
  progress(`thaw: ${n} calls of ${fn}, each ${idleMs} ms after the previous one (pause grace is short)`);
  await p.invokeOk(fn);
  const out: Thaw = { idleMs, attempts: n, thawed: [], otherStarts: {} };
  for (let i = 0; i < n; i++) {
    await sleep(idleMs);
    const r = await p.invokeOk(fn);
    if (r.start === 'thawed') {
      const rec = await p.activation(r.activationId!);
      out.thawed.push({ httpMs: r.ms, initMs: rec.initMs });
    } else out.otherStarts[r.start ?? 'none'] = (out.otherStarts[r.start ?? 'none'] ?? 0) + 1;
  }
  return out;
}

// ---------------------------------------------------------------- 6. density

export interface SeqWarm {
  calls: number;
  kiln: Summary;
  notWarm: number;
}

export async function seqWarm(p: Platform, fn: string, warmup: number, calls: number): Promise<SeqWarm> {
  const k: number[] = [];
  let notWarm = 0;
  for (let i = 0; i < warmup + calls; i++) {
    const r = await p.invokeOk(fn);
    if (i < warmup) continue;
    if (r.start !== 'warm') notWarm++;
    k.push(r.ms);
  }
  return { calls, kiln: summarize(k), notWarm };
}

export interface MemoryStage {
  containers: number;
  cgroupUsageMeanMB: number;
  cgroupUsageMinMB: number;
  cgroupUsageMaxMB: number;
  memAvailableDropMB: number;
  dropPerContainerMB: number;
  beyondCgroupPerContainerMB: number;
  frozen: number;
  startKinds: Record<string, number>;
  startSeconds: number;
  failures: number;
  firstFailure?: string;
  failureReasons: Record<string, number>;
}

export interface NoShim {
  containers: number;
  processesInContainerCgroups: number;
  containersWithOneProcess: number;
  containerInitParents: Record<string, number>;
  extraHostProcesses: { pid: number; ppid: number; cgroup: string; cmd: string }[];
  invokerChildren: { pid: number; title: string }[];
}

export interface Density {
  memoryMB: number;
  concurrentStarts: number;
  stageA: MemoryStage;
  stageB: MemoryStage;
  targetN: number;
  warmEmpty: SeqWarm;
  warmFull: SeqWarm;
  noShim: NoShim;
  keyUsers: string[]; // /proc/key-users at the peak (uid: usage, keys/quota, bytes/quota)
}

const MB = 2 ** 20;

async function memAvailable(): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < 3; i++) {
    xs.push((await meminfo()).MemAvailable);
    await sleep(150);
  }
  return mean(xs);
}

async function waitQuiet(p: Platform, stems: number, ms: number): Promise<void> {
  await waitFor('the invoker to settle (stems ready, nothing starting)', async () => {
    const s = await p.containerStates();
    return (s.prewarm ?? 0) >= stems && (s.starting ?? 0) === 0 && (s.removing ?? 0) === 0 && (s.busy ?? 0) === 0;
  }, ms, 50).catch(() => undefined);
}

/** Starts (first call) one container per function, at most `limit` at once, until `deadline`. */
async function startFunctions(p: Platform, names: string[], limit: number, deadline: number, kinds: Record<string, number>, reasons: Record<string, number>): Promise<{ failures: number; firstFailure?: string; started: string[] }> {
  let failures = 0;
  let firstFailure: string | undefined;
  const started: string[] = [];
  await mapLimit(names, limit, async (name) => {
    try {
      const r = await p.invokeOk(name);
      kinds[r.start ?? 'none'] = (kinds[r.start ?? 'none'] ?? 0) + 1;
      started.push(name);
    } catch (e) {
      failures++;
      firstFailure ??= errMsg(e).slice(0, 600);
      // The reason without the container's name and time: "runc ... msg=...".
      const m = errMsg(e).match(/msg=\\?"([^"\\]+)/);
      const why = m ? m[1] : errMsg(e).replace(/[0-9a-f]{12}/g, '…').slice(0, 160);
      reasons[why] = (reasons[why] ?? 0) + 1;
    }
  }, deadline);
  return { failures, firstFailure, started };
}

// A function's container is named after it, but a specialised stem cell keeps its prewarm-*
// name: the density functions' containers are found by their memory limit, which no other
// container of the run has.
async function densityContainers(p: Platform, memoryMB: number): Promise<string[]> {
  const ids: string[] = [];
  for (const id of await p.containers()) if ((await p.memoryLimit(id)) === memoryMB * MB) ids.push(id);
  return ids;
}

async function measureStage(p: Platform, memoryMB: number, before: number, startSeconds: number, kinds: Record<string, number>, failures: number, firstFailure: string | undefined, failureReasons: Record<string, number>): Promise<MemoryStage> {
  const ids = await densityContainers(p, memoryMB);
  await waitFor(`${ids.length} containers to be frozen`, async () => {
    for (const id of ids) if (!(await p.isFrozen(id))) return false;
    return true;
  }, 30_000, 100).catch(() => undefined);
  await sleep(1000);
  const after = await memAvailable();
  const usage: number[] = [];
  let frozen = 0;
  for (const id of ids) {
    const u = await p.memoryUsage(id);
    if (u !== null) usage.push(u);
    if (await p.isFrozen(id)) frozen++;
  }
  const meanUsage = mean(usage);
  const drop = before - after;
  const per = ids.length ? drop / ids.length : NaN;
  return {
    containers: ids.length,
    cgroupUsageMeanMB: round(meanUsage / MB, 2),
    cgroupUsageMinMB: round(Math.min(...usage) / MB, 2),
    cgroupUsageMaxMB: round(Math.max(...usage) / MB, 2),
    memAvailableDropMB: round(drop / MB, 1),
    dropPerContainerMB: round(per / MB, 2),
    beyondCgroupPerContainerMB: round((per - meanUsage) / MB, 2),
    frozen,
    startKinds: kinds,
    startSeconds: round(startSeconds, 1),
    failures,
    firstFailure,
    failureReasons,
  };
}

async function noShimCheck(p: Platform, memoryMB: number, before: Proc[]): Promise<NoShim> {
  // Two looks half a second apart: a shim or a runc left behind stays; a passing command does not.
  const first = new Map(processTable().map((x) => [x.pid, x]));
  await sleep(500);
  const after = new Map(processTable().filter((x) => first.get(x.pid)?.start === x.start).map((x) => [x.pid, x]));
  const ids = await densityContainers(p, memoryMB);
  const initParents: Record<string, number> = {};
  let inCgroups = 0;
  let one = 0;
  for (const id of ids) {
    const pids = await p.cgroupPids(id);
    inCgroups += pids.length;
    if (pids.length === 1) one++;
    for (const pid of pids) {
      const pp = after.get(pid)?.ppid;
      const up = pp === undefined ? undefined : after.get(pp);
      const parent = pp === undefined ? 'unknown' : pp === 1 ? '1 (init)' : up ? commandOf(up).slice(0, 40) : String(pp);
      initParents[parent] = (initParents[parent] ?? 0) + 1;
    }
  }
  const existed = new Set(before.map((x) => `${x.pid}:${x.start}`));
  const platformPid = p.child.pid!;
  const ours = new Set(descendants(platformPid, [...after.values()]).map((x) => x.pid));
  const extra = [...after.values()]
    .filter((x) => !existed.has(`${x.pid}:${x.start}`))
    .map((x) => ({ ...x, cgroup: memoryCgroupOf(x.pid) }))
    .filter((x) => x.cgroup !== '' && !x.cgroup.includes('/kiln/')) // gone since, or a container's own process
    // Ours: below the platform process, or orphaned to init (where a shim would live).
    .filter((x) => ours.has(x.pid) || x.ppid === 1);
  const invokerPid = p.invokerPid();
  const invokerChildren = invokerPid ? childrenOf(invokerPid, [...after.values()]).map((c) => ({ pid: c.pid, title: commandOf(c) })) : [];
  return {
    containers: ids.length,
    processesInContainerCgroups: inCgroups,
    containersWithOneProcess: one,
    containerInitParents: initParents,
    extraHostProcesses: extra.map((x) => ({ pid: x.pid, ppid: x.ppid, cgroup: x.cgroup, cmd: commandOf(x).slice(0, 120) })),
    invokerChildren,
  };
}

/**
 * K containers of distinct functions, frozen: their cgroup memory and the host's MemAvailable
 * drop; then up to N in all, and hello's warm latency next to them against an empty invoker.
 */
export async function density(p: Platform, c: Ctx, o: { k: number; n: number; memoryMB: number; limit: number; stems: number; startBudgetMs: number; warmEmpty: SeqWarm }): Promise<Density> {
  const names = Array.from({ length: o.n }, (_, i) => `dens-${String(i + 1).padStart(3, '0')}`);
  progress(`density: deploying ${o.n} functions (memoryMB ${o.memoryMB})`);
  await mapLimit(names, 8, async (name) => {
    await p.deploy(await writeHello(srcDir(c), name, { memoryMB: o.memoryMB, marker: `kiln-bench ${c.runId} ${name}` }));
  }, c.deadline);
  const procsBefore = processTable();
  await waitQuiet(p, o.stems, 10_000);

  // Stage A: K containers.
  const a = names.slice(0, o.k);
  const beforeA = await memAvailable();
  const kindsA: Record<string, number> = {};
  let t = performance.now();
  progress(`density: starting ${a.length} containers, ${o.limit} at a time`);
  const reasons: Record<string, number> = {};
  const ra = await startFunctions(p, a, o.limit, Date.now() + o.startBudgetMs, kindsA, reasons);
  const secA = (performance.now() - t) / 1000;
  await waitQuiet(p, o.stems, 10_000);
  const stageA = await measureStage(p, o.memoryMB, beforeA, secA, kindsA, ra.failures, ra.firstFailure, { ...reasons });
  progress(`density: ${stageA.containers} frozen, cgroup usage mean ${stageA.cgroupUsageMeanMB} MB, MemAvailable drop ${stageA.dropPerContainerMB} MB/container`);

  // Stage B: up to N in all, bounded by time.
  const b = names.slice(o.k);
  const kindsB: Record<string, number> = { ...kindsA };
  t = performance.now();
  const budget = Math.min(c.deadline, Date.now() + o.startBudgetMs);
  progress(`density: starting up to ${b.length} more containers, ${o.limit} at a time (budget ${Math.round((budget - Date.now()) / 1000)} s)`);
  const rb = await startFunctions(p, b, o.limit, budget, kindsB, reasons);
  const secB = secA + (performance.now() - t) / 1000;
  await waitQuiet(p, o.stems, 15_000);
  const stageB = await measureStage(p, o.memoryMB, beforeA, secB, kindsB, ra.failures + rb.failures, ra.firstFailure ?? rb.firstFailure, reasons);
  progress(`density: ${stageB.containers} frozen containers (${stageB.frozen} frozen per freezer), cgroup mean ${stageB.cgroupUsageMeanMB} MB`);
  const noShim = await noShimCheck(p, o.memoryMB, procsBefore);
  const keyUsers = (await fsp.readFile('/proc/key-users', 'utf8').catch(() => '')).split('\n').map((l) => l.trim()).filter(Boolean);
  progress(`density: warm latency of hello next to ${stageB.containers} frozen containers`);
  const warmFull = await seqWarm(p, 'hello', 20, 300);
  return { memoryMB: o.memoryMB, concurrentStarts: o.limit, stageA, stageB, targetN: o.n, warmEmpty: o.warmEmpty, warmFull, noShim, keyUsers };
}
