// Noisy neighbours: hello's warm latency (one client, sequential calls) while, on the same
// invoker, one function burns all the CPU it can (several concurrent calls of a busy loop, so
// several of its containers at once) and another fills its memory up to its cgroup limit,
// releases it and starts again (it may be OOM-killed and replaced). Compared with hello's warm
// latency measured just before, quiet, in the same run.
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { cgroupVersion } from '../invoker/cgroups';
import { cgroupCpuMs } from './cpu';
import { seqWarm } from './kiln';
import { Platform, writeFunction } from './platform';
import { round, summarize, Summary } from './stats';
import { progress, sleep } from './util';

// A busy loop for event.ms (no I/O: the container's one thread never yields).
const BURN_JS = `exports.handler = async (event) => {
  const until = Date.now() + ((event && event.ms) || 2000);
  let loops = 0;
  let x = 1;
  while (Date.now() < until) {
    for (let i = 0; i < 100000; i++) x = (x * 1103515245 + 12345) % 2147483648;
    loops++;
  }
  return { loops, x };
};
`;

// Fills the container's memory up to event.fill of its cgroup limit (4 MB buffers, every page
// written), releases it (a forced GC frees the buffers' memory), and again, for event.ms.
const HOG_JS = `const fs = require('node:fs');
require('node:v8').setFlagsFromString('--expose_gc');
const gc = require('node:vm').runInNewContext('gc');
const read = (f) => { try { return fs.readFileSync(f, 'utf8').trim(); } catch { return null; } };
const num = (t) => (t === null || t === 'max' ? null : Number(t));
const limit = () => num(read('/sys/fs/cgroup/memory/memory.limit_in_bytes')) ?? num(read('/sys/fs/cgroup/memory.max'));
const usage = () => num(read('/sys/fs/cgroup/memory/memory.usage_in_bytes')) ?? num(read('/sys/fs/cgroup/memory.current')) ?? process.memoryUsage().rss;
exports.handler = async (event, context) => {
  const until = Date.now() + ((event && event.ms) || 2000);
  const lim = limit() || context.memoryMB * 2 ** 20;
  const target = lim * ((event && event.fill) || 0.95);
  let cycles = 0;
  let peak = 0;
  let held = 0;
  while (Date.now() < until) {
    const hold = [];
    for (let i = 0; i < 2000; i++) {
      const u = usage();
      if (u > peak) peak = u;
      if (u >= target) break;
      hold.push(Buffer.alloc(4 * 2 ** 20, 1));
    }
    held = Math.max(held, hold.length * 4);
    cycles++;
    hold.length = 0;
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return { cycles, peakMB: Math.round(peak / 2 ** 20), heldMB: held, limitMB: Math.round(lim / 2 ** 20) };
};
`;

const NOISY_MANIFEST = { runtime: 'node20', handler: 'index.handler', timeoutMs: 10_000, concurrency: 1, env: {}, web: false };

export interface NoisyLoad {
  fn: string;
  callers: number;
  memoryMB: number;
  callMs: number;
  calls: number;
  ok: number;
  failed: number;
  failures: Record<string, number>;
  starts: Record<string, number>;
  results: Record<string, number>; // the hog: peak cgroup usage (MB) and cycles, summed/maxed
}

export interface Noisy {
  quiet: Summary;
  quietNotWarm: number;
  noisy: Summary;
  noisyNotWarm: number;
  noisyStarts: Record<string, number>; // X-Kiln-Start of hello's calls under noise
  noisyErrors: number;
  windowMs: number;
  burner: NoisyLoad;
  hog: NoisyLoad;
  containerCpuCores: number; // CPU used by all the invoker's containers over the window, in cores
  cpuCoresByFunction: Record<string, number>; // the same, per function (containers seen at the window's end)
  kilnParentCpu: string; // the CPU weight of kiln's parent cgroup, which all containers share
  loadAvg: number; // 1-min load average at the window's end
  phaseMs: number;
}

export interface NoisyOptions {
  scratch: string;
  runId: string;
  warmup: number;
  quietCalls: number;
  rampMs: number;
  windowMs: number;
  maxCalls: number;
  burnCallMs: number;
  hogCallMs: number;
  hogMemoryMB: number;
}

/** CPU ms used so far by each of the invoker's containers. */
async function cpuByContainer(p: Platform): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const id of await p.containers()) {
    const v = await cgroupCpuMs(`kiln/${p.invokerId}/${id}`).catch(() => NaN);
    if (Number.isFinite(v)) out.set(id, v);
  }
  return out;
}

async function kilnParentCpu(): Promise<string> {
  if (cgroupVersion() === 2) return `cpu.weight ${(await fsp.readFile('/sys/fs/cgroup/kiln/cpu.weight', 'utf8').catch(() => '?')).trim()}`;
  return `cpu.shares ${(await fsp.readFile('/sys/fs/cgroup/cpu/kiln/cpu.shares', 'utf8').catch(() => '?')).trim()}`;
}

/** Runs `call` in `callers` sequential loops until `stop()` says so; counts successes and failures. */
function loadLoops(p: Platform, load: NoisyLoad, event: unknown, stop: () => boolean): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: load.callers });
  const lane = async () => {
    while (!stop()) {
      load.calls++;
      try {
        const r = await p.invoke(load.fn, event, agent);
        load.starts[r.start ?? 'none'] = (load.starts[r.start ?? 'none'] ?? 0) + 1;
        if (r.status === 200) {
          load.ok++;
          try {
            const body = JSON.parse(r.body) as Record<string, unknown>;
            const res = (body.result ?? body) as Record<string, unknown>;
            for (const k of ['peakMB', 'heldMB', 'limitMB']) if (typeof res[k] === 'number') load.results[`max ${k}`] = Math.max(load.results[`max ${k}`] ?? 0, res[k] as number);
            if (typeof res.cycles === 'number') load.results.cycles = (load.results.cycles ?? 0) + res.cycles;
          } catch {
            /* not JSON: counted as ok anyway */
          }
        } else {
          load.failed++;
          const why = `${r.status} ${r.body.replace(/[0-9a-f]{8,}/g, '…').slice(0, 120)}`;
          load.failures[why] = (load.failures[why] ?? 0) + 1;
        }
      } catch (e) {
        load.failed++;
        const why = e instanceof Error ? e.message.slice(0, 120) : String(e);
        load.failures[why] = (load.failures[why] ?? 0) + 1;
        await sleep(100);
      }
    }
  };
  return Promise.all(Array.from({ length: load.callers }, lane)).then(() => agent.destroy());
}

export async function noisyNeighbours(p: Platform, fn: string, o: NoisyOptions): Promise<Noisy> {
  const t0 = performance.now();
  const src = path.join(o.scratch, 'src');
  const burnerCallers = Math.max(2, 2 * os.cpus().length);
  const burner: NoisyLoad = { fn: 'noisy-burn', callers: burnerCallers, memoryMB: 128, callMs: o.burnCallMs, calls: 0, ok: 0, failed: 0, failures: {}, starts: {}, results: {} };
  const hog: NoisyLoad = { fn: 'noisy-hog', callers: 1, memoryMB: o.hogMemoryMB, callMs: o.hogCallMs, calls: 0, ok: 0, failed: 0, failures: {}, starts: {}, results: {} };
  await p.deploy(await writeFunction(src, burner.fn, BURN_JS, { ...NOISY_MANIFEST, memoryMB: burner.memoryMB }, `kiln-bench ${o.runId}`));
  await p.deploy(await writeFunction(src, hog.fn, HOG_JS, { ...NOISY_MANIFEST, memoryMB: hog.memoryMB }, `kiln-bench ${o.runId}`));

  // Quiet: hello alone (the noisy functions deployed, none of their containers running).
  progress(`noisy neighbours: quiet warm latency of ${fn}, ${o.warmup} + ${o.quietCalls} calls`);
  const quiet = await seqWarm(p, fn, o.warmup, o.quietCalls);

  // Noisy: the burner's and the hog's callers run for the whole window.
  progress(`noisy neighbours: ${burnerCallers} concurrent calls of a CPU burner (${o.burnCallMs} ms each) and a memory filler (memoryMB ${o.hogMemoryMB}) for ${(o.rampMs + o.windowMs) / 1000} s; ${fn} sequential calls after ${o.rampMs / 1000} s`);
  let stopping = false;
  const loads = Promise.all([
    loadLoops(p, burner, { ms: o.burnCallMs }, () => stopping),
    loadLoops(p, hog, { ms: o.hogCallMs, fill: 0.95 }, () => stopping),
  ]);
  const noisy: number[] = [];
  let noisyNotWarm = 0;
  const noisyStarts: Record<string, number> = {};
  let noisyErrors = 0;
  let windowMs = 0;
  let cpuCores = NaN;
  const byFn: Record<string, number> = {};
  let loadAvg = NaN;
  try {
    await sleep(o.rampMs);
    // hello sat idle through the ramp-up (longer than the pause grace): warm it up again, uncounted.
    for (let i = 0; i < o.warmup; i++) await p.invoke(fn);
    const cg = `kiln/${p.invokerId}`;
    const cpu0 = await cgroupCpuMs(cg).catch(() => NaN);
    const per0 = await cpuByContainer(p);
    const w0 = performance.now();
    while (performance.now() - w0 < o.windowMs && noisy.length < o.maxCalls) {
      const r = await p.invoke(fn);
      if (r.status !== 200) {
        noisyErrors++;
        await sleep(50);
        continue;
      }
      if (r.start !== 'warm') noisyNotWarm++;
      noisyStarts[r.start ?? 'none'] = (noisyStarts[r.start ?? 'none'] ?? 0) + 1;
      noisy.push(r.ms);
    }
    windowMs = performance.now() - w0;
    const cpu1 = await cgroupCpuMs(cg).catch(() => NaN);
    cpuCores = round((cpu1 - cpu0) / windowMs, 2);
    loadAvg = round(os.loadavg()[0], 2);
    for (const [id, ms] of await cpuByContainer(p)) {
      const f = [fn, burner.fn, hog.fn].find((x) => p.containerOf(id, x)) ?? 'other';
      byFn[f] = (byFn[f] ?? 0) + (ms - (per0.get(id) ?? 0)) / windowMs;
    }
    for (const k of Object.keys(byFn)) byFn[k] = round(byFn[k], 2);
  } finally {
    stopping = true;
    // Calls in flight end within their own duration; bounded anyway.
    await Promise.race([loads, sleep(Math.max(o.burnCallMs, o.hogCallMs) + 10_000)]);
  }
  const out: Noisy = {
    quiet: quiet.kiln, quietNotWarm: quiet.notWarm, noisy: summarize(noisy), noisyNotWarm, noisyStarts, noisyErrors, windowMs: Math.round(windowMs),
    burner, hog, containerCpuCores: cpuCores, cpuCoresByFunction: byFn, kilnParentCpu: await kilnParentCpu(), loadAvg, phaseMs: Math.round(performance.now() - t0),
  };
  progress(`noisy neighbours: ${fn} p50 quiet ${out.quiet.p50} ms, noisy ${out.noisy.p50} ms (${out.noisy.n} calls); burner ${burner.ok}/${burner.calls} ok, hog ${hog.ok}/${hog.calls} ok; containers used ${cpuCores} cores`);
  return out;
}
