// `npm run bench`: measures kiln next to its floors and peers in one run and writes
// bench/results.json and bench/results.md (the table is also printed on stdout; progress goes
// to stderr). Two kiln platforms run one after the other, each in its own state dir under /tmp:
//   run 1 (no stem cells): warm latency, throughput, cold starts, with the BullMQ, direct-socket
//          and bare-runc floors interleaved;
//   run 2 (2 stem cells, 50 ms pause grace): prewarm starts, thaws, memory and density.
// Docker is measured in run 1 next to the runc floor: the engine that answers, or one the bench
// starts for the run when dockerd is installed (stopped by its pid once its phases are done).
// Run 1 ends with noisy neighbours: hello's warm latency next to a CPU burner and a memory filler.
// Every count and wait is bounded; SIGINT/SIGTERM, an error or the watchdog stop the platforms
// and remove everything the bench made (containers, mounts, cgroups, its layers, /tmp dirs).
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from '../common/paths';
import { hexOf } from '../invoker/images/layers';
import { mountedUnder } from '../invoker/rootfs';
import { DockerPeer, findDockerEngine, OwnDockerd } from './docker';
import { BullFloor, LAYERS_DIR, RuncFloor } from './floors';
import { coldStarts, Ctx, density, idleWarm, prewarmStarts, seqWarm, thawFloors, thawStarts, throughput, warmLatency } from './kiln';
import { machineInfo } from './machine';
import { noisyNeighbours } from './noisy';
import { Platform, writeHello } from './platform';
import { buildRows, Results, toMarkdown, writeResults } from './report';
import { errMsg, progress } from './util';

const SOFT_BUDGET_MS = 300_000; // optional loops stop starting new work after this
const HARD_LIMIT_MS = 540_000; // the watchdog: clean up and stop whatever is still running

// Fixed counts.
const WARM = { warmup: 50, calls: 300 };
const THROUGHPUT = { clients: 64, warmupMs: 3000, measureMs: 10_000, maxRequests: 200_000 };
const COLD_ITERATIONS = 15;
const THAW_FLOOR_CYCLES = 30;
const PREWARM_ITERATIONS = 15;
const THAW = { calls: 40, idleMs: 200 };
const IDLE_CALLS = 15;
const DENSITY = { k: 20, n: 200, memoryMB: 64, limit: 4, stems: 2, startBudgetMs: 120_000 };
// ≤ 40 s in all: quiet calls (~3 s), noise ramp-up, the measured window, the noisy calls' drain.
const NOISY = { warmup: 20, quietCalls: 300, rampMs: 3000, windowMs: 20_000, maxCalls: 3000, burnCallMs: 2000, hogCallMs: 2000, hogMemoryMB: 256 };

const started = Date.now();
const runId = randomBytes(3).toString('hex');
const platforms: Platform[] = [];
const starts = new AbortController(); // aborted by abort(): platform starts under way give up
let floor: RuncFloor | undefined;
let docker: DockerPeer | null = null;
let dockerd: OwnDockerd | null = null;
let dockerDone: Promise<Record<string, unknown>> | undefined;
let scratch = '';
let layersBefore = new Set<string>();
let aborting = false;
let cleaning: Promise<Record<string, unknown>> | undefined;

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('kiln bench: needs root (runc, mounts, cgroups), as kiln does');
    return 1;
  }
  scratch = await fsp.mkdtemp('/tmp/kiln-bench-');
  // Containers run as an unprivileged host uid (user namespace): it must pass through (o+x, not o+r).
  await fsp.chmod(scratch, 0o711);
  layersBefore = new Set(await fsp.readdir(LAYERS_DIR).catch(() => [] as string[]));
  const ctx: Ctx = { runId, scratch, deadline: started + SOFT_BUDGET_MS };
  const machine = await machineInfo();
  progress(`run ${runId}: ${machine.nproc} cores, ${machine.memTotalMB} MB, ${machine.kernel}, ${machine.runc}; scratch ${scratch}`);
  const engine = await findDockerEngine(runId, (own) => (dockerd = own));
  const dockerReason = engine.socket === null ? engine.reason : null;
  // Run 1's pause grace (2 s) is longer than the idle diagnostic's gaps (3 × 200 ms), so hello
  // stays warm there and direct socket requests never meet a frozen container.
  const env1 = { KILN_PREWARM_COUNT: '0', KILN_INVOKER_CONCURRENCY: '64', KILN_INVOKER_MEMORY_MB: '20000', KILN_PAUSE_GRACE_MS: '2000' };
  const env2 = { KILN_PREWARM_COUNT: String(DENSITY.stems), KILN_PAUSE_GRACE_MS: '50', KILN_INVOKER_MEMORY_MB: '20000' };
  const results: Results = {
    tool: 'kiln bench (bench/main.ts)', machine, runId, durationS: 0,
    settings: { 'run 1 (warm, throughput, cold)': env1, 'run 2 (prewarm, thaw, density)': env2 },
    docker: engine.socket === null ? { available: false, reason: engine.reason } : { available: true, how: engine.how },
    cleanup: {}, errors: [], rows: [],
    noise: { loadAvg: [], otherKilnInvokers: [], loadAvgAtEnd: [] },
  };
  const phase = async <T>(name: string, fn: () => Promise<T>): Promise<T | undefined> => {
    stopIfAborting();
    try {
      return await fn();
    } catch (e) {
      progress(`${name} failed: ${errMsg(e)}`);
      const log = platforms.at(-1)?.log.split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-3).join(' / ');
      results.errors.push(`${name}: ${errMsg(e)}${log ? ` (kiln's last warnings: ${log.slice(0, 1500)})` : ''}`);
      return undefined;
    }
  };

  // Floors that need no platform: the bare runc bundle material, and the Docker image.
  floor = new RuncFloor(path.join(scratch, 'floor'), `bench-floor-${runId}`);
  await floor.prepare(LAYERS_DIR, `kiln-bench ${runId}`);
  if (engine.socket !== null) {
    docker = new DockerPeer(engine.socket, scratch, runId);
    const ok = await phase('docker import', async () => {
      await docker!.importRootfs(floor!.rootfsLayers);
      return true;
    });
    if (!ok) {
      results.docker = { available: false, reason: `docker import failed: ${results.errors.at(-1)}` };
      results.cleanup.docker = await finishDocker();
    } else {
      Object.assign(results.docker, { version: docker.version, containerd: docker.containerd, importMs: Math.round(docker.importMs), imageMB: docker.imageMB });
      progress(`Docker ${docker.version}: ${engine.how}; image imported in ${Math.round(docker.importMs)} ms (${docker.imageMB} MB)`);
    }
  } else progress(`Docker peer skipped: ${dockerReason}`);

  // Run 1.
  stopIfAborting();
  const p1 = new Platform({ name: 'run 1', stateDir: path.join(scratch, 'run1'), invokerId: `bench-1-${runId}`, env: env1, signal: starts.signal });
  platforms.push(p1);
  await p1.start();
  await p1.deploy(await writeHello(path.join(scratch, 'src'), 'hello', { marker: `kiln-bench ${runId}` }));
  const bull = new BullFloor(p1.redisSocket, `kiln-bench-floor-${runId}`, THROUGHPUT.clients);
  await bull.ready();
  results.warm = await phase('warm latency', () => warmLatency(p1, bull, 'hello', WARM.warmup, WARM.calls));
  if (results.warm) progress(`warm: kiln p50 ${results.warm.kiln.p50} ms; floor ${results.warm.floorP50} ms (BullMQ ${results.warm.bull.p50} + direct ${results.warm.direct.p50})`);
  results.idleWarm = await phase('warm after idle', () => idleWarm(p1, bull, 'hello', IDLE_CALLS, THAW.idleMs, scratch));
  await sampleNoise(results);
  results.throughput = await phase('throughput', () => throughput(p1, bull, ctx, THROUGHPUT.clients, THROUGHPUT.warmupMs, THROUGHPUT.measureMs, THROUGHPUT.maxRequests));
  await bull.close();
  await sampleNoise(results);
  results.cold = await phase('cold start', () => coldStarts(p1, floor!, docker, ctx, COLD_ITERATIONS));
  if (results.cold) await phase('thaw floor', () => thawFloors(floor!, docker, results.cold!, THAW_FLOOR_CYCLES, THAW.idleMs));
  if (docker || dockerd) {
    progress('Docker: done; removing its containers and image, stopping the bench\'s dockerd');
    results.cleanup.docker = await finishDocker();
  }
  await sampleNoise(results);
  results.noisy = await phase('noisy neighbours', () => noisyNeighbours(p1, 'hello', { scratch, runId, ...NOISY }));
  progress('run 1: stopping kiln');
  await p1.stop();
  results.cleanup['run 1 leftovers'] = await p1.leftovers();

  // Run 2.
  stopIfAborting();
  const p2 = new Platform({ name: 'run 2', stateDir: path.join(scratch, 'run2'), invokerId: `bench-2-${runId}`, env: env2, signal: starts.signal });
  platforms.push(p2);
  await p2.start();
  await p2.deploy(await writeHello(path.join(scratch, 'src'), 'hello', { marker: `kiln-bench ${runId}` }));
  await p2.invokeOk('hello');
  progress(`warm latency on an empty invoker (run 2): ${WARM.calls} calls`);
  const warmEmpty = await phase('warm (empty invoker)', () => seqWarm(p2, 'hello', WARM.warmup, WARM.calls));
  results.prewarm = await phase('prewarm', () => prewarmStarts(p2, ctx, PREWARM_ITERATIONS, DENSITY.stems));
  results.thaw = await phase('thaw', () => thawStarts(p2, 'hello', THAW.calls, THAW.idleMs));
  if (warmEmpty) results.density = await phase('density', () => density(p2, ctx, { ...DENSITY, warmEmpty }));
  await sampleNoise(results);
  progress('run 2: stopping kiln (removes every container)');
  await p2.stop();
  results.cleanup['run 2 leftovers'] = await p2.leftovers();

  Object.assign(results.cleanup, await cleanup());
  results.noise.loadAvgAtEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
  results.durationS = Math.round((Date.now() - started) / 1000);
  results.rows = buildRows(results);
  await writeResults(path.join(REPO_ROOT, 'bench'), results);
  process.stdout.write(toMarkdown(results));
  progress(`wrote bench/results.json and bench/results.md (${results.durationS} s)`);
  return results.errors.length ? 2 : 0;
}

/** Other work on the machine while measuring (other kiln invokers, load): context for the figures. */
async function sampleNoise(r: Results): Promise<void> {
  r.noise.loadAvg.push(Math.round(os.loadavg()[0] * 100) / 100);
  const ours = new Set(platforms.map((p) => p.invokerId).concat(floor ? [floor.floorId] : []));
  for (const dir of ['/sys/fs/cgroup/memory/kiln', '/sys/fs/cgroup/kiln']) {
    const ents = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of ents) if (e.isDirectory() && !ours.has(e.name) && !r.noise.otherKilnInvokers.includes(e.name)) r.noise.otherKilnInvokers.push(e.name);
  }
}

/** Stops the platforms, removes the floor's and Docker's containers, the bench's layers and /tmp dirs. */
function cleanup(): Promise<Record<string, unknown>> {
  cleaning ??= (async () => {
    const out: Record<string, unknown> = {};
    for (const p of platforms) {
      try {
        await p.stop();
      } catch (e) {
        out[`stop ${p.o.name}`] = errMsg(e);
      }
    }
    if (floor) {
      try {
        out['runc floor'] = await floor.cleanup();
      } catch (e) {
        out['runc floor'] = `clean-up failed: ${errMsg(e)}`;
      }
    }
    if (docker || dockerd) out.docker = await finishDocker();
    // The layers kiln unpacked for the bench's deploys (each carries the run id, so no one
    // else's deploy has the same digest) are removed from the shared layer store.
    let layers = 0;
    for (const p of platforms) {
      for (const d of p.deployed) {
        const hex = hexOf(d.digest);
        if (layersBefore.has(hex)) continue;
        layersBefore.add(hex); // once
        await fsp.rm(path.join(LAYERS_DIR, hex), { recursive: true, force: true });
        await fsp.rm(path.join(LAYERS_DIR, 'blobs', hex), { force: true });
        layers++;
      }
    }
    out['bench layers removed from .kiln/layers'] = layers;
    const mounts = scratch ? await mountedUnder(scratch) : [];
    if (scratch && mounts.length === 0) await fsp.rm(scratch, { recursive: true, force: true }).catch(() => undefined);
    out['mounts left under the scratch dir'] = mounts.length;
    out['scratch dir removed'] = mounts.length === 0;
    return out;
  })();
  return cleaning;
}

/** Removes the Docker peer's containers and image, then stops the bench's own dockerd (once). */
function finishDocker(): Promise<Record<string, unknown>> {
  dockerDone ??= (async () => {
    const out: Record<string, unknown> = {};
    if (docker) {
      try {
        out.peer = await docker.cleanup();
      } catch (e) {
        out.peer = `clean-up failed: ${errMsg(e)}`;
      }
      docker = null;
    }
    if (dockerd) {
      try {
        out["bench's dockerd"] = await dockerd.stop();
      } catch (e) {
        out["bench's dockerd"] = `stop failed: ${errMsg(e)}`;
      }
    }
    return out;
  })();
  return dockerDone;
}

/** Once an abort has begun (signal, watchdog), the main flow starts nothing new. */
function stopIfAborting(): void {
  if (aborting) throw new Error('aborted');
}

async function abort(why: string, code: number): Promise<never> {
  if (aborting) return new Promise<never>(() => undefined); // the first abort exits
  aborting = true;
  progress(`${why}: cleaning up`);
  starts.abort(); // a platform still starting stops what it started
  const c = await cleanup().catch((e) => ({ error: errMsg(e) }));
  progress(`clean-up: ${JSON.stringify(c)}`);
  process.exit(code);
}

process.on('SIGINT', () => void abort('interrupted (SIGINT)', 130));
process.on('SIGTERM', () => void abort('terminated (SIGTERM)', 143));
// A reader that went away (`| head`) must not end the run before it cleans up.
for (const out of [process.stdout, process.stderr]) out.on('error', () => undefined);
setTimeout(() => void abort(`watchdog: the run passed ${HARD_LIMIT_MS / 1000} s`, 3), HARD_LIMIT_MS).unref();

main().then(
  (code) => process.exit(code),
  (e) => abort(`failed: ${e instanceof Error ? e.stack : e}`, 1),
);
