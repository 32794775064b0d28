// Turns the measurements into rows (figure, floor or peer, ratio, target, PASS/MISS) and
// writes bench/results.json and the readable bench/results.md.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Cold, Density, IdleWarm, Prewarm, Thaw, Throughput, WarmLatency } from './kiln';
import type { MachineInfo } from './machine';
import type { Noisy } from './noisy';
import { round, summarize } from './stats';

export type Verdict = 'PASS' | 'MISS' | 'info' | 'skipped' | 'not run';

export interface Row {
  id: string;
  what: string;
  kiln: string;
  kilnValue: number | null;
  floor: string;
  floorValue: number | null;
  ratio: number | null;
  target: string;
  verdict: Verdict;
  note?: string;
}

export interface Results {
  tool: string;
  machine: MachineInfo;
  runId: string;
  durationS: number;
  settings: Record<string, Record<string, string>>;
  docker: { available: boolean; reason?: string; version?: string; how?: string; containerd?: string; importMs?: number; imageMB?: number };
  warm?: WarmLatency;
  idleWarm?: IdleWarm;
  noise: { loadAvg: number[]; otherKilnInvokers: string[]; loadAvgAtEnd: number[] };
  throughput?: Throughput;
  cold?: Cold;
  prewarm?: Prewarm;
  thaw?: Thaw;
  density?: Density;
  noisy?: Noisy;
  cleanup: Record<string, unknown>;
  errors: string[];
  rows: Row[];
}

// PEERS.md figures (measured once on another day): only ever shown as labelled notes.
const PEERS_DOCKER_COLD_MS = 228;
const PEERS_DOCKER_UNPAUSE_MS = 27;
const PEERS_FROZEN_MB = 7.6;

const ms = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : `${round(x, x < 10 ? 2 : 1)} ms`);
const r2 = (x: number) => round(x, 2);

function verdict(ratio: number | null, op: '<=' | '>=', limit: number): Verdict {
  if (ratio === null || !Number.isFinite(ratio)) return 'not run';
  return (op === '<=' ? ratio <= limit : ratio >= limit) ? 'PASS' : 'MISS';
}

function ratioOf(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return r2(a / b);
}

export function buildRows(r: Results): Row[] {
  const rows: Row[] = [];
  const noDocker = r.docker.available ? undefined : r.docker.reason ?? 'no Docker engine running';

  // 1. warm latency
  const w = r.warm;
  if (w) {
    const ratio = ratioOf(w.kiln.p50, w.floorP50);
    rows.push({
      id: '1a', what: 'warm invoke p50, HTTP in → HTTP out, 1 client, sequential (hello)',
      kiln: ms(w.kiln.p50), kilnValue: w.kiln.p50,
      floor: `BullMQ round trip ${ms(w.bull.p50)} + direct socket POST /run ${ms(w.direct.p50)} = ${ms(w.floorP50)}`, floorValue: w.floorP50,
      ratio, target: 'kiln/floor ≤ 1.5', verdict: verdict(ratio, '<=', 1.5),
      note: `${w.calls} calls after ${w.warmup} warm-up, interleaved with the floor's; ${w.notWarm} not warm. ` +
        `From the last ${w.breakdown.records} activation records (1 ms resolution), p50: queuedAt→startedAt (waitMs) ${ms(w.breakdown.waitMs.p50)}, ` +
        `container call (durationMs) ${ms(w.breakdown.durationMs.p50)}, queuedAt→endedAt ${ms(w.breakdown.queuedToEndedMs.p50)}, outside the record (HTTP, auth, lookup, pub/sub delivery, response) ${ms(w.breakdown.outsideRecordMs.p50)}. ` +
        `Redis commands per call: kiln ${w.redisCommandsPerCall.kiln}, BullMQ floor ${w.redisCommandsPerCall.floor}`,
    });
    rows.push({
      id: '1b', what: 'warm invoke p99 (same calls)',
      kiln: ms(w.kiln.p99), kilnValue: w.kiln.p99,
      floor: `BullMQ p99 ${ms(w.bull.p99)} + direct p99 ${ms(w.direct.p99)} = ${ms(w.floorP99)}`, floorValue: w.floorP99,
      ratio: ratioOf(w.kiln.p99, w.floorP99), target: '—', verdict: 'info',
    });
  } else rows.push(notRun('1a', 'warm invoke p50'));

  // 2. throughput
  const t = r.throughput;
  if (t) {
    const ratio = ratioOf(t.kiln.rps, t.bull.rps);
    rows.push({
      id: '2', what: `warm throughput, ${t.kiln.concurrency} clients (keep-alive)`,
      kiln: `${t.kiln.rps} calls/s`, kilnValue: t.kiln.rps,
      floor: `bare BullMQ round trips, ${t.bull.concurrency} in flight: ${t.bull.rps}/s`, floorValue: t.bull.rps,
      ratio, target: 'kiln/floor ≥ 0.5', verdict: verdict(ratio, '>=', 0.5),
      note: `${t.how}; ${t.kilnContainers} container(s); ${t.kiln.completed} calls in ${t.kiln.windowMs} ms, ${t.kiln.errors} errors; kiln p50 ${ms(t.kiln.latency.p50)}, p99 ${ms(t.kiln.latency.p99)} under load. ` +
        `CPU ms per call: kiln ${JSON.stringify(t.cpuMsPerCall.kiln)}; floor ${JSON.stringify(t.cpuMsPerCall.floor)} (2 cores = 2000 CPU ms/s)`,
    });
  } else rows.push(notRun('2', 'warm throughput'));

  // 3. cold start
  const c = r.cold;
  if (c && c.newVersion.length) {
    const init = summarize(c.newVersion.map((s) => s.initMs));
    const http = summarize(c.newVersion.map((s) => s.httpMs));
    const fToReady = summarize(c.floor.map((s) => s.toReadyMs));
    const fTotal = summarize(c.floor.map((s) => s.totalMs));
    const fParts = `create ${ms(summarize(c.floor.map((s) => s.createMs)).p50)}, start ${ms(summarize(c.floor.map((s) => s.startMs)).p50)}, ready ${ms(summarize(c.floor.map((s) => s.readyMs)).p50)}, reply ${ms(summarize(c.floor.map((s) => s.replyMs)).p50)}`;
    const notCold = c.newVersion.filter((s) => s.start !== 'cold').length;
    let ratio = ratioOf(init.p50, fToReady.p50);
    rows.push({
      id: '3a', what: `cold start p50, new version, initMs of the record (KILN_PREWARM_COUNT=0)`,
      kiln: ms(init.p50), kilnValue: init.p50,
      floor: `bare runc create + start + socket ready: ${ms(fToReady.p50)}`, floorValue: fToReady.p50,
      ratio, target: 'kiln/floor ≤ 1.15', verdict: verdict(ratio, '<=', 1.15),
      note: `${c.newVersion.length} iterations; ${notCold} not cold; floor parts (p50): ${fParts}; floor bundle prep (mkdir, overlay mount, config.json; not in the floor) p50 ${ms(summarize(c.floor.map((s) => s.prepMs)).p50)}`,
    });
    ratio = ratioOf(http.p50, fTotal.p50);
    rows.push({
      id: '3b', what: 'cold start p50, new version, HTTP in → HTTP out',
      kiln: ms(http.p50), kilnValue: http.p50,
      floor: `bare runc create + start + ready + first reply: ${ms(fTotal.p50)}`, floorValue: fTotal.p50,
      ratio, target: 'kiln/floor ≤ 1.15', verdict: verdict(ratio, '<=', 1.15),
      note: `kiln p99 ${ms(http.p99)}; floor p99 ${ms(fTotal.p99)}; the call also retires (removes) the previous version's container. ` +
        `Record p50: waitMs − initMs (queue, code layer fetch and unpack) ${ms(summarize(c.newVersion.map((s) => s.waitMs - s.initMs)).p50)}, durationMs (first /run) ${ms(summarize(c.newVersion.map((s) => s.durationMs)).p50)}, HTTP − (endedAt − queuedAt) ${ms(summarize(c.newVersion.map((s) => s.httpMs - s.queuedToEndedMs)).p50)}`,
    });
    if (c.newFunction.length) {
      const nf = summarize(c.newFunction.map((s) => s.httpMs));
      const nfi = summarize(c.newFunction.map((s) => s.initMs));
      rows.push({
        id: '3c', what: 'cold start p50, first call of a new function (nothing retired), HTTP (initMs)',
        kiln: `${ms(nf.p50)} (${ms(nfi.p50)})`, kilnValue: nf.p50,
        floor: `runc floor ${ms(fTotal.p50)} (${ms(fToReady.p50)} to ready)`, floorValue: fTotal.p50,
        ratio: ratioOf(nf.p50, fTotal.p50), target: '—', verdict: 'info',
        note: 'diagnostic: same as 3b without a concurrent removal of the old version',
      });
    }
    if (c.docker.length) {
      const d = summarize(c.docker.map((s) => s.totalMs));
      const dr = summarize(c.docker.map((s) => s.toReadyMs));
      const dParts = `create ${ms(summarize(c.docker.map((s) => s.createMs)).p50)}, start ${ms(summarize(c.docker.map((s) => s.startMs)).p50)}, ready ${ms(summarize(c.docker.map((s) => s.readyMs)).p50)}, reply ${ms(summarize(c.docker.map((s) => s.replyMs)).p50)}`;
      ratio = ratioOf(http.p50, d.p50);
      rows.push({
        id: '3d', what: 'cold start p50 (3b, HTTP in → HTTP out) vs Docker: engine API create + start + ready + first reply, same root filesystem',
        kiln: ms(http.p50), kilnValue: http.p50, floor: `Docker ${r.docker.version}: ${ms(d.p50)}`, floorValue: d.p50,
        ratio, target: 'kiln/Docker ≤ 0.6', verdict: verdict(ratio, '<=', 0.6),
        note: `${c.docker.length} Docker cold starts interleaved with kiln's and the runc floor's${c.dockerError ? ` (first Docker error: ${c.dockerError})` : ''}; Docker parts (p50): ${dParts}; p99 ${ms(d.p99)}; ` +
          `to ready (create + start + ready) ${ms(dr.p50)} vs kiln initMs ${ms(init.p50)} (${ratioOf(init.p50, dr.p50)}×) and bare runc ${ms(fToReady.p50)}; ` +
          `Docker − bare runc, first reply included: ${ms(d.p50 - fTotal.p50)}; engine: ${r.docker.how}`,
      });
    } else {
      rows.push({
        id: '3d', what: 'Docker peer: create + start + ready + first reply', kiln: ms(http.p50), kilnValue: http.p50,
        floor: 'skipped', floorValue: null, ratio: null, target: 'kiln/Docker ≤ 0.6', verdict: 'skipped',
        note: c.dockerError ? `Docker failed: ${c.dockerError}` : noDocker,
      });
    }
  } else rows.push(notRun('3a', 'cold start'));

  // 4. prewarm
  const p = r.prewarm;
  const dockerCold = c && c.docker.length ? summarize(c.docker.map((s) => s.totalMs)).p50 : null;
  const dockerToReady = c && c.docker.length ? summarize(c.docker.map((s) => s.toReadyMs)).p50 : null;
  if (p && p.samples.length) {
    const init = summarize(p.samples.map((s) => s.initMs));
    const http = summarize(p.samples.map((s) => s.httpMs));
    const notPrewarm = p.samples.filter((s) => s.start !== 'prewarm').length;
    const peersNote = `PEERS.md (not measured in this run): Docker create+start+ready ${PEERS_DOCKER_COLD_MS} ms → 0.1× = ${PEERS_DOCKER_COLD_MS / 10} ms`;
    // initMs ends when the runtime is ready: compared with Docker to ready; HTTP with Docker's first reply.
    for (const [id, what, v, dv, dwhat] of [
      ['4a', 'prewarm start p50, initMs (thaw + code + /init)', init.p50, dockerToReady, 'Docker create + start + ready'],
      ['4b', 'prewarm start p50, HTTP in → HTTP out', http.p50, dockerCold, 'Docker create + start + ready + first reply'],
    ] as const) {
      const ratio = ratioOf(v, dv);
      rows.push({
        id, what, kiln: ms(v), kilnValue: v,
        floor: dv === null ? 'Docker cold start: skipped' : `${dwhat} ${ms(dv)}`, floorValue: dv,
        ratio, target: 'kiln/Docker cold ≤ 0.1', verdict: dv === null ? 'skipped' : verdict(ratio, '<=', 0.1),
        note: `${dv === null ? `${noDocker}; ${peersNote}; ` : ''}${p.samples.length} iterations, ${notPrewarm} not prewarm` +
          (id === '4b' ? `; record p50: waitMs − initMs (queue, code layer fetch and unpack) ${ms(summarize(p.samples.map((s) => s.waitMs - s.initMs)).p50)}, durationMs (first /run) ${ms(summarize(p.samples.map((s) => s.durationMs)).p50)}, HTTP − (endedAt − queuedAt) ${ms(summarize(p.samples.map((s) => s.httpMs - s.queuedToEndedMs)).p50)}` : '') +
          (c && c.newVersion.length && id === '4b' ? `; vs kiln's own cold start HTTP ${ms(summarize(c.newVersion.map((s) => s.httpMs)).p50)}: ${ratioOf(v, summarize(c.newVersion.map((s) => s.httpMs)).p50)}×` : ''),
      });
    }
    if (p.newFunction.length) {
      const nf = summarize(p.newFunction.map((s) => s.httpMs));
      const nfi = summarize(p.newFunction.map((s) => s.initMs));
      const ratio = ratioOf(nf.p50, dockerCold);
      rows.push({
        id: '4c', what: 'prewarm start p50, first call of a new function (nothing retired), HTTP (initMs)',
        kiln: `${ms(nf.p50)} (${ms(nfi.p50)})`, kilnValue: nf.p50,
        floor: dockerCold === null ? 'Docker cold start: skipped' : `Docker create + start + ready + first reply ${ms(dockerCold)}`, floorValue: dockerCold,
        ratio, target: 'kiln/Docker cold ≤ 0.1', verdict: dockerCold === null ? 'skipped' : verdict(ratio, '<=', 0.1),
        note: `${p.newFunction.filter((s) => s.start !== 'prewarm').length} of ${p.newFunction.length} not prewarm; record p50: waitMs ${ms(summarize(p.newFunction.map((s) => s.waitMs)).p50)}, durationMs ${ms(summarize(p.newFunction.map((s) => s.durationMs)).p50)}, HTTP − (endedAt − queuedAt) ${ms(summarize(p.newFunction.map((s) => s.httpMs - s.queuedToEndedMs)).p50)}` +
          (p.stemWaitTimeouts.length ? `; stems not ready within 10 s before ${p.stemWaitTimeouts.length} call(s): ${JSON.stringify(p.stemWaitTimeouts.slice(0, 3))}` : ''),
      });
    }
  } else rows.push(notRun('4a', 'prewarm start'));

  // 5. thaw
  const th = r.thaw;
  if (th && th.thawed.length) {
    const http = summarize(th.thawed.map((s) => s.httpMs));
    const init = summarize(th.thawed.map((s) => s.initMs));
    const floor = c && c.floorThawMs.length ? summarize(c.floorThawMs) : null;
    const bullIdle = r.idleWarm?.bull.p50 ?? r.warm?.bull.p50 ?? 0;
    rows.push({
      id: '5a', what: 'thaw-to-response p50, HTTP in → HTTP out (X-Kiln-Start: thawed)',
      kiln: ms(http.p50), kilnValue: http.p50,
      floor: floor ? `bare runc container: freezer thaw + POST /run ${ms(floor.p50)} + BullMQ after ${r.idleWarm?.idleMs ?? ''} ms idle ${ms(bullIdle)} = ${ms(floor.p50 + bullIdle)}` : 'not measured', floorValue: floor ? round(floor.p50 + bullIdle) : null,
      ratio: floor ? ratioOf(http.p50, floor.p50 + bullIdle) : null, target: '—', verdict: 'info',
      note: `${th.thawed.length} of ${th.attempts} calls thawed (${th.idleMs} ms idle, KILN_PAUSE_GRACE_MS=50); others: ${JSON.stringify(th.otherStarts)}; kiln p99 ${ms(http.p99)}`,
    });
    if (r.idleWarm) {
      rows.push({
        id: '5a′', what: `warm call after ${r.idleWarm.idleMs} ms idle without a freeze (run 1, pause grace 2 s), HTTP`,
        kiln: ms(r.idleWarm.warm.p50), kilnValue: r.idleWarm.warm.p50,
        floor: `after the same idle: BullMQ ${ms(r.idleWarm.bull.p50)} + direct ${ms(r.idleWarm.direct.p50)} = ${ms(r.idleWarm.floorP50)}`, floorValue: r.idleWarm.floorP50,
        ratio: ratioOf(r.idleWarm.warm.p50, r.idleWarm.floorP50), target: '—', verdict: 'info',
        note: `diagnostic for 5a: how much of thaw-to-response is idleness rather than the thaw; back-to-back warm p50 was ${ms(r.warm?.kiln.p50)} (${r.idleWarm.warm.n} warm calls, ${r.idleWarm.otherStarts} others)`,
      });
      const echo = r.idleWarm.echo;
      if (echo) {
        rows.push({
          id: '5a″', what: `one hop: a byte to another process and back (unix socket) after ${r.idleWarm.idleMs} ms idle`,
          kiln: '—', kilnValue: null, floor: ms(echo.p50), floorValue: echo.p50,
          ratio: null, target: '—', verdict: 'info',
          note: `diagnostic for 5a and 5c: what this machine charges one round trip between two processes after the same quiet, next to ${ms(r.idleWarm.echoBackToBack.p50)} back to back (p50 of ${echo.n} and ${r.idleWarm.echoBackToBack.n}); a kiln call passes about a dozen messages in turn between five processes (client, gateway, Redis, invoker, container)`,
        });
      }
    }
    rows.push({
      id: '5b', what: 'thaw p50, initMs of the record (freezer thaw)',
      kiln: ms(init.p50), kilnValue: init.p50, floor: '—', floorValue: null, ratio: null, target: '—', verdict: 'info',
    });
    const du = c && c.dockerUnpauseMs.length ? summarize(c.dockerUnpauseMs) : null;
    const duRatio = du ? ratioOf(http.p50, du.p50) : null;
    rows.push({
      id: '5c', what: 'thaw-to-response p50 (5a, HTTP in → HTTP out) vs Docker: engine API unpause + first reply', kiln: ms(http.p50), kilnValue: http.p50,
      floor: du ? `Docker ${ms(du.p50)}` : 'skipped', floorValue: du ? du.p50 : null, ratio: duRatio,
      target: 'kiln/Docker ≤ 0.2', verdict: du ? verdict(duRatio, '<=', 0.2) : 'skipped',
      note: du
        ? `${du.n} pause / ${r.idleWarm?.idleMs ?? th.idleMs} ms idle / unpause + POST /run cycles on one Docker container (kept-alive connection, as the runc floor's); Docker p99 ${ms(du.p99)}; runc floor (freezer thaw + POST /run) ${ms(floor?.p50)}; kiln thaw alone (5b) ${ms(init.p50)}`
        : `${noDocker ?? c?.dockerError}; PEERS.md (not measured in this run): Docker unpause + first request ${PEERS_DOCKER_UNPAUSE_MS} ms`,
    });
  } else rows.push(notRun('5a', 'thaw-to-response'));

  // 6. density
  const d = r.density;
  if (d) {
    rows.push({
      id: '6a', what: `memory per frozen idle container, own cgroup (${d.stageA.containers} functions, memoryMB ${d.memoryMB})`,
      kiln: `${d.stageA.cgroupUsageMeanMB} MB`, kilnValue: d.stageA.cgroupUsageMeanMB, floor: '—', floorValue: null, ratio: null, target: '—', verdict: 'info',
      note: `min ${d.stageA.cgroupUsageMinMB}, max ${d.stageA.cgroupUsageMaxMB} MB; PEERS.md (not measured in this run): ${PEERS_FROZEN_MB} MB; at ${d.stageB.containers} containers: mean ${d.stageB.cgroupUsageMeanMB} MB`,
    });
    rows.push({
      id: '6b', what: 'host MemAvailable drop per frozen container beyond its cgroup',
      kiln: `${d.stageA.beyondCgroupPerContainerMB} MB (K=${d.stageA.containers}); ${d.stageB.beyondCgroupPerContainerMB} MB (N=${d.stageB.containers})`, kilnValue: d.stageB.beyondCgroupPerContainerMB,
      floor: '—', floorValue: null, ratio: null, target: '—', verdict: 'info',
      note: `MemAvailable drop ${d.stageA.dropPerContainerMB} MB/container (K), ${d.stageB.dropPerContainerMB} MB/container (N); includes page tables, kernel stacks, overlay and mount structures, the invoker's and Redis's own growth, and anything else on the machine: a host-wide figure, noisy when other work runs (a negative value means the noise exceeded the signal)`,
    });
    const ratio = ratioOf(d.warmFull.kiln.p50, d.warmEmpty.kiln.p50);
    rows.push({
      id: '6c', what: `warm p50 of hello next to ${d.stageB.containers} frozen containers (target N ${d.targetN})`,
      kiln: ms(d.warmFull.kiln.p50), kilnValue: d.warmFull.kiln.p50,
      floor: `same invoker, empty (2 stems + hello): ${ms(d.warmEmpty.kiln.p50)}`, floorValue: d.warmEmpty.kiln.p50,
      ratio, target: 'within 2× (≤ 2)', verdict: verdict(ratio, '<=', 2),
      note: `${d.stageB.containers} containers started in ${d.stageB.startSeconds} s, ${d.concurrentStarts} at a time (${JSON.stringify(d.stageB.startKinds)}), ${d.stageB.frozen} frozen, ${d.stageB.failures} failed${d.stageB.failures ? ` (${Object.entries(d.stageB.failureReasons).map(([k, v]) => `${v}× ${k}`).join('; ')})` : ''}${d.stageB.containers < d.targetN && !d.stageB.failures ? `; fewer than ${d.targetN}: time budget` : ''}; p99 ${ms(d.warmFull.kiln.p99)} vs ${ms(d.warmEmpty.kiln.p99)}`,
    });
    const s = d.noShim;
    const extra = s.extraHostProcesses.length + s.invokerChildren.length;
    rows.push({
      id: '6d', what: 'host processes per container besides its own (no shim, no runc left)',
      kiln: `${extra} extra for ${s.containers} containers`, kilnValue: extra,
      floor: '0', floorValue: 0, ratio: null, target: '0 extra, 1 process per container', verdict: extra === 0 && s.containersWithOneProcess === s.containers ? 'PASS' : 'MISS',
      note: `${s.processesInContainerCgroups} processes in the ${s.containers} containers' cgroups (${s.containersWithOneProcess} with exactly one); container inits' parents: ${JSON.stringify(s.containerInitParents)}; invoker children: ${s.invokerChildren.length}` +
        (s.extraHostProcesses.length ? `; extra: ${s.extraHostProcesses.slice(0, 5).map((x) => `${x.pid} ${x.cmd}`).join(' | ')}` : ''),
    });
    const attempted = d.stageB.containers + d.stageB.failures;
    rows.push({
      id: '6e', what: 'frozen containers held (first calls of distinct functions that succeeded)',
      kiln: `${d.stageB.containers} of ${attempted} attempted`, kilnValue: d.stageB.containers,
      floor: '—', floorValue: null, ratio: null, target: `${d.targetN} (time allowing), no failures`,
      verdict: d.stageB.failures ? 'MISS' : d.stageB.containers >= d.targetN ? 'PASS' : 'info',
      note: (d.stageB.failures ? `failures: ${Object.entries(d.stageB.failureReasons).map(([k, v]) => `${v}× ${k}`).join('; ')}` : 'no failures') +
        `; /proc/key-users at the peak (uid: usage refs, keys/quota, bytes/quota): ${d.keyUsers.filter((l) => !l.startsWith('0:')).join(' | ') || 'n/a'}`,
    });
  } else rows.push(notRun('6a', 'density'));

  // 7. noisy neighbours
  const n = r.noisy;
  if (n && n.noisy.n) {
    const ratio = ratioOf(n.noisy.p50, n.quiet.p50);
    const load = (l: Noisy['burner']) => `${l.fn} (memoryMB ${l.memoryMB}, ${l.callers} caller${l.callers > 1 ? 's' : ''}, ${l.callMs} ms per call): ${l.calls} calls, ${l.ok} ok, ${l.failed} failed` +
      `${l.failed ? ` (${Object.entries(l.failures).slice(0, 3).map(([k, v]) => `${v}× ${k}`).join('; ')})` : ''}, starts ${JSON.stringify(l.starts)}${Object.keys(l.results).length ? `, ${JSON.stringify(l.results)}` : ''}`;
    rows.push({
      id: '7', what: 'noisy neighbours: warm p50 of hello (sequential) while a CPU burner and a memory filler run on the same invoker',
      kiln: ms(n.noisy.p50), kilnValue: n.noisy.p50,
      floor: `hello alone, just before: ${ms(n.quiet.p50)}`, floorValue: n.quiet.p50,
      ratio, target: 'noisy/quiet ≤ 2', verdict: verdict(ratio, '<=', 2),
      note: `${n.quiet.n} quiet calls (${n.quietNotWarm} not warm), then ${n.noisy.n} calls in ${Math.round(n.windowMs / 100) / 10} s of noise (${n.noisyNotWarm} not warm: ${JSON.stringify(n.noisyStarts)}, ${n.noisyErrors} errors); p99 ${ms(n.noisy.p99)} vs ${ms(n.quiet.p99)} quiet; ` +
        `noisy calls: ${load(n.burner)}; ${load(n.hog)}; the invoker's containers used ${n.containerCpuCores} cores over the window (${JSON.stringify(n.cpuCoresByFunction)}; ${r.machine.nproc} on the machine; every container sits below kiln's parent cgroup, ${n.kilnParentCpu}, which shares the CPU with the host's other processes, load average ${n.loadAvg ?? '?'}); phase ${Math.round(n.phaseMs / 1000)} s`,
    });
  } else rows.push(notRun('7', 'noisy neighbours'));
  return rows;
}

function notRun(id: string, what: string): Row {
  return { id, what, kiln: '—', kilnValue: null, floor: '—', floorValue: null, ratio: null, target: '—', verdict: 'not run', note: 'did not run (see errors)' };
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function toMarkdown(r: Results): string {
  const m = r.machine;
  const lines: string[] = [];
  lines.push(`# kiln benchmark results`);
  lines.push('');
  lines.push(`- date: ${m.date} (run ${r.runId}, ${r.durationS} s)`);
  lines.push(`- machine: nproc ${m.nproc} (${m.cpuModel}), memory ${m.memTotalMB} MB (${m.memAvailableMB} MB available at start), kernel ${m.kernel}, cgroup ${m.cgroup}`);
  lines.push(`- runc: ${m.runc}; Node.js ${m.node}; redis-server ${m.redis}; Docker: ${r.docker.available ? `engine ${r.docker.version}${r.docker.containerd ? ` (containerd ${r.docker.containerd})` : ''}, ${r.docker.how}; image of the runc floor's root filesystem (${r.docker.imageMB} MB) imported in ${r.docker.importMs} ms` : `skipped: ${r.docker.reason}`}`);
  lines.push(`- load average at start: ${m.loadAvgAtStart.join(' ')}; other kiln invokers on the machine at start: ${m.otherKilnInvokersAtStart.length ? m.otherKilnInvokersAtStart.join(', ') : 'none'}`);
  lines.push(`- other work on the machine during the run: 1-min load average ${r.noise.loadAvg.join(', ')} (end ${r.noise.loadAvgAtEnd.join(' ')}); other kiln invokers seen: ${r.noise.otherKilnInvokers.length ? r.noise.otherKilnInvokers.join(', ') : 'none'}`);
  lines.push(`- floors and peers were measured in this same run, interleaved with kiln's calls where possible; PEERS.md figures appear only in notes, labelled as not measured here.`);
  lines.push('');
  lines.push('| # | measurement | kiln | floor / peer (this run) | ratio | target | result |');
  lines.push('| --- | --- | --- | --- | --- | --- | --- |');
  for (const row of r.rows) {
    lines.push(`| ${row.id} | ${cell(row.what)} | ${cell(row.kiln)} | ${cell(row.floor)} | ${row.ratio === null ? '—' : row.ratio} | ${cell(row.target)} | ${row.verdict} |`);
  }
  lines.push('');
  lines.push('## Notes');
  for (const row of r.rows) if (row.note) lines.push(`- **${row.id}**: ${row.note}`);
  lines.push('');
  lines.push('## Settings');
  for (const [run, env] of Object.entries(r.settings)) lines.push(`- ${run}: ${Object.entries(env).map(([k, v]) => `\`${k}=${v}\``).join(' ')}`);
  lines.push('');
  lines.push('## Clean-up');
  lines.push('```');
  lines.push(JSON.stringify(r.cleanup, null, 1));
  lines.push('```');
  if (r.errors.length) {
    lines.push('');
    lines.push('## Errors');
    for (const e of r.errors) lines.push(`- ${cell(e)}`);
  }
  lines.push('');
  return lines.join('\n');
}

export async function writeResults(dir: string, r: Results): Promise<void> {
  await fsp.writeFile(path.join(dir, 'results.json'), JSON.stringify(r, null, 1) + '\n');
  await fsp.writeFile(path.join(dir, 'results.md'), toMarkdown(r));
}
