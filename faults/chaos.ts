// `npm run chaos`: a bounded chaos run. Starts its own kiln (temporary state dir, free ports),
// deploys a small function, runs a steady load of sync and async calls with client-chosen
// activation ids, and every 8-15 s injects one random fault: kill -9 of the invoker, of the
// gateway or of redis-server (each restarted by the platform), SIGTERM to the invoker, the
// invoker stopped (SIGSTOP) for 3-5 s as a blocked event loop, kill -9 of a running container's
// init, or a second invoker started and killed -9 a few seconds later. Then it stops the load,
// waits for every accepted call to end, audits (none lost, none doubled), stops the platform and
// checks that nothing of it is left on the machine. Exit code 0 only if all of that holds.
//
//   npm run chaos -- [--minutes N] [--seed S] [--json]
import { ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { Redis } from 'ioredis';
import { KilnClient } from '../cli/client';
import { deployDirectory } from '../cli/commands/deploy';
import { keys } from '../common/redis-keys';
import { ActivationRecord, FINAL_STATUSES } from '../common/types';
import { launchInvoker } from '../platform/launch';
import { audit, Audit, Load, settle } from './load';
import { alive, Proc, readProc, stopChild } from '../platform/procs';
import { frozen, isClean, leftovers, Leftovers, Platform, purge, removeStateDir, sleep, within } from './platform';

const KINDS = ['kill-invoker', 'kill-gateway', 'kill-redis', 'term-invoker', 'stop-invoker', 'kill-container', 'second-invoker'] as const;
type Kind = (typeof KINDS)[number];

const FUNCTION_NAME = 'chaos';
const PER_SECOND = 15;
const SETTLE_MS = 90_000;
const RECOVERY_MS = 60_000; // how long a killed part may take to be back (bounded wait, then noted)

interface Fault {
  kind: Kind;
  at: number; // seconds since the load started
  detail: string;
  recoveredMs?: number; // until the part answered again (invoker, gateway, Redis)
  skipped?: string; // why nothing was injected
}

export interface ChaosReport {
  ok: boolean;
  interrupted: boolean;
  seed: string;
  minutes: number;
  durationS: number; // the whole run, start-up to clean-up
  loadS: number; // how long the load ran
  platform: { stateDir: string; invokerId: string; url: string };
  faults: { total: number; byKind: Partial<Record<Kind, number>>; list: Fault[] };
  invocations: {
    sent: number;
    accepted: number;
    answered: number;
    completed: number;
    failedByCode: Record<string, number>;
    httpStatuses: Record<string, number>; // what the load's clients got back
    lost: number;
    lostIds: { unfinished: string[]; answeredButUnknown: string[] };
    doubled: number;
    doubledIds: string[];
    latency: { syncP50Ms: number; syncP99Ms: number; maxMs: number; slow: { at: number; mode: string; status: string; ms: number; id: string }[]; slowCount: number };
    redelivered: number; // final records with attempt > 1: the function got the event again
    failures: { what: string; count: number; at: number[]; ids: string[] }[]; // by status and message
  } | null;
  leftovers: Leftovers | null; // after the platform stopped, before any purge
  purged: Leftovers | null; // what was still there after the chaos run removed the leftovers itself
  problems: string[];
}

// ---- arguments and randomness ---------------------------------------------------------------

function parseArgs(argv: string[]): { minutes: number; seed: string; json: boolean } {
  const positive = (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 || n > 24 * 60) throw new InvalidArgumentError('a number of minutes > 0 (at most 1440)');
    return n;
  };
  const program = new Command('chaos')
    .description('a bounded chaos run against a kiln of its own: faults under load, then an audit and a leftovers check')
    .option('--minutes <n>', 'how long the load and the faults last', positive, 3)
    .option('--seed <s>', 'seed of the random sequence of faults and gaps (default: a random one, printed)')
    .option('--json', 'print the report as JSON')
    .allowExcessArguments(false);
  program.parse(argv);
  const o = program.opts<{ minutes: number; seed?: string; json?: boolean }>();
  return { minutes: o.minutes, seed: o.seed ?? String(randomInt(2 ** 31)), json: !!o.json };
}

/** mulberry32 seeded from a string: the same seed gives the same faults in the same order. */
function rngFrom(seed: string): () => number {
  let h = 1779033703 ^ seed.length;
  for (let i = 0; i < seed.length; i++) {
    h = Math.imul(h ^ seed.charCodeAt(i), 3432918353);
    h = (h << 13) | (h >>> 19);
  }
  let a = h >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- progress -------------------------------------------------------------------------------

const t0 = Date.now();
function progress(msg: string): void {
  process.stderr.write(`[chaos ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
}

// ---- the run --------------------------------------------------------------------------------

interface SecondInvoker {
  id: string;
  child: ChildProcess;
}

class Chaos {
  readonly faults: Fault[] = [];
  readonly problems: string[] = [];
  readonly stopped = new Set<number>(); // pids we sent SIGSTOP and owe a SIGCONT
  readonly seconds: SecondInvoker[] = [];
  private loadStart = 0;

  constructor(private readonly p: Platform, private readonly rng: () => number, private readonly signal: AbortSignal) {}

  get aborted(): boolean {
    return this.signal.aborted;
  }

  startClock(): void {
    this.loadStart = Date.now();
  }

  private since(): number {
    return Math.round((Date.now() - this.loadStart) / 100) / 10;
  }

  /** Runs faults until `end`: a gap of 8-15 s after each fault started (never before it ended). */
  async run(end: number): Promise<void> {
    let next = Date.now() + this.gap();
    for (let i = 0; i < 10_000 && !this.aborted; i++) {
      if (next >= end) {
        await sleep(end - Date.now(), this.signal);
        return;
      }
      await sleep(next - Date.now(), this.signal);
      if (this.aborted) return;
      // A fixed number of draws per fault, so the sequence depends on the seed alone.
      const kind = KINDS[Math.floor(this.rng() * KINDS.length)];
      const param = this.rng();
      const started = Date.now();
      next = started + this.gap();
      const fault = await this.inject(kind, param).catch((e): Fault => ({ kind, at: this.since(), detail: '', skipped: `failed: ${(e as Error).message}` }));
      this.faults.push(fault);
      progress(`fault ${this.faults.length} at ${fault.at}s: ${kind}${fault.detail ? ` (${fault.detail})` : ''}${fault.skipped ? ` SKIPPED: ${fault.skipped}` : ''}${fault.recoveredMs !== undefined ? `, back after ${(fault.recoveredMs / 1000).toFixed(1)} s` : ''}`);
      next = Math.max(next, Date.now() + 1000);
    }
  }

  private gap(): number {
    return 8000 + Math.floor(this.rng() * 7000);
  }

  private async inject(kind: Kind, param: number): Promise<Fault> {
    const at = this.since();
    switch (kind) {
      case 'kill-invoker':
      case 'term-invoker': {
        const inv = await this.p.waitForChild('kiln-invoker', 15_000, this.signal);
        if (!inv) return { kind, at, detail: '', skipped: 'no invoker process found' };
        const t = Date.now();
        process.kill(inv.pid, kind === 'kill-invoker' ? 'SIGKILL' : 'SIGTERM');
        const back = await this.invokerBack(inv, RECOVERY_MS);
        if (!back && !this.aborted) this.problems.push(`${kind} at ${at}s: no healthy invoker again within ${RECOVERY_MS / 1000} s`);
        return { kind, at, detail: `pid ${inv.pid}`, recoveredMs: back ? Date.now() - t : undefined };
      }
      case 'kill-gateway': {
        const gw = await this.p.waitForChild('kiln-gateway', 15_000, this.signal);
        if (!gw) return { kind, at, detail: '', skipped: 'no gateway process found' };
        const t = Date.now();
        process.kill(gw.pid, 'SIGKILL');
        const back = await this.until(async () => !alive(gw) && (await this.healthy(`${this.p.url}/healthz`)), RECOVERY_MS);
        if (!back && !this.aborted) this.problems.push(`${kind} at ${at}s: the gateway's /healthz did not answer 200 again within ${RECOVERY_MS / 1000} s`);
        return { kind, at, detail: `pid ${gw.pid}`, recoveredMs: back ? Date.now() - t : undefined };
      }
      case 'kill-redis': {
        const r = await this.p.waitForChild('redis-server', 15_000, this.signal);
        if (!r) return { kind, at, detail: '', skipped: 'no redis-server process found' };
        const t = Date.now();
        process.kill(r.pid, 'SIGKILL');
        const back = await this.until(async () => !alive(r) && (await this.healthy(`${this.p.url}/healthz`)), RECOVERY_MS);
        if (!back && !this.aborted) this.problems.push(`${kind} at ${at}s: the gateway's /healthz did not answer 200 again within ${RECOVERY_MS / 1000} s`);
        return { kind, at, detail: `pid ${r.pid}`, recoveredMs: back ? Date.now() - t : undefined };
      }
      case 'stop-invoker': {
        const inv = await this.p.waitForChild('kiln-invoker', 15_000, this.signal);
        if (!inv) return { kind, at, detail: '', skipped: 'no invoker process found' };
        const ms = 3000 + Math.floor(param * 2000);
        this.stopped.add(inv.pid);
        const t = Date.now();
        process.kill(inv.pid, 'SIGSTOP'); // as a blocked event loop: no lock renewal, no progress
        try {
          await sleep(ms, this.signal);
        } finally {
          this.cont(inv.pid);
        }
        return { kind, at, detail: `pid ${inv.pid} stopped for ${((Date.now() - t) / 1000).toFixed(1)} s${this.aborted ? ' (cut short: interrupted)' : ''}` };
      }
      case 'kill-container': {
        // Running: alive and not frozen. A frozen container (idle past the pause grace) would
        // only take the SIGKILL when thawed, on cgroup v1, so it is left out (and counted).
        const all = this.p.containers().map((c) => ({ ...c, proc: readProc(c.pid) })).filter((c) => c.proc && c.proc.state !== 'Z');
        const running = all.filter((c) => frozen(c.pid) === false);
        const note = `${running.length} running, ${all.length - running.length} frozen`;
        if (running.length === 0) return { kind, at, detail: note, skipped: 'no running container' };
        const c = running[Math.min(running.length - 1, Math.floor(param * running.length))];
        process.kill(c.pid, 'SIGKILL');
        const died = await this.until(() => !alive(c.proc!), 3000);
        if (!died && !this.aborted) this.problems.push(`kill-container at ${at}s: ${c.invoker}/${c.id} (pid ${c.pid}) still alive 3 s after SIGKILL`);
        return { kind, at, detail: `container ${c.invoker}/${c.id}, init pid ${c.pid}, ${died ? 'died' : 'STILL ALIVE after 3 s'} (${note})` };
      }
      case 'second-invoker': {
        const id = `${this.p.invokerId}-${this.seconds.length + 2}`;
        const { child, url } = await launchInvoker(this.p.env, id, {
          detached: true, // its own process group: Ctrl-C is handled by the chaos run
          onOutput: (d) => this.p.append(`[${id}] ${d}`),
        });
        const second: SecondInvoker = { id, child };
        this.seconds.push(second);
        const up = await this.until(() => this.healthy(`${url}/healthz`), 30_000);
        const ms = 3000 + Math.floor(param * 3000);
        if (up) await sleep(ms, this.signal);
        this.p.track(child.pid ? [child.pid] : []);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        const took = await this.containersOf(id);
        return { kind, at, detail: `${id} pid ${child.pid}, ${up ? `killed after ${(ms / 1000).toFixed(1)} s` : 'not healthy within 30 s, killed'}${took !== null ? `, had ${took} containers` : ''}`, ...(up ? {} : { skipped: 'second invoker did not become healthy' }) };
      }
    }
  }

  /** How many containers the invoker `id` had on disk when it was killed. */
  private async containersOf(id: string): Promise<number | null> {
    try {
      return (await fsp.readdir(path.join(this.p.stateDir, 'runc', id))).length;
    } catch {
      return null;
    }
  }

  cont(pid: number): void {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      /* gone */
    }
    this.stopped.delete(pid);
  }

  private async invokerBack(old: Proc, ms: number): Promise<boolean> {
    const url = `http://127.0.0.1:${this.p.env.KILN_INVOKER_METRICS_PORT}/healthz`;
    return this.until(async () => {
      if (alive(old)) return false;
      const now = this.p.childByTitle('kiln-invoker');
      return !!now && now.pid !== old.pid && (await this.healthy(url));
    }, ms);
  }

  private async healthy(url: string): Promise<boolean> {
    return fetch(url, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
  }

  /** Polls `check` every 100 ms until true, `ms` passed or `signal` (the interruption) fired. */
  private async until(check: () => Promise<boolean> | boolean, ms: number, signal = this.signal): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && !signal.aborted) {
      if (await check()) return true;
      await sleep(100, signal);
    }
    return false;
  }

  /** Waits (bounded) until the live invoker removed what the killed second invokers left. */
  async sweptSeconds(ms: number, signal = this.signal): Promise<string[]> {
    const gone = (id: string) => !fs.existsSync(path.join(this.p.stateDir, 'containers', id)) && !fs.existsSync(path.join(this.p.stateDir, 'runc', id));
    await this.until(() => this.seconds.every((s) => gone(s.id)), ms, signal);
    return this.seconds.filter((s) => !gone(s.id)).map((s) => s.id);
  }

  /** Second invokers still running (the run was interrupted while one lived): stopped gracefully. */
  async stopSeconds(force: AbortSignal): Promise<void> {
    for (const s of this.seconds) await stopChild(s.child, 45_000, force);
  }
}

/**
 * How long each call of the load took to answer, seen from outside Load: its entries are
 * watched every 100 ms (send time: when the entry appears; answer: when its status turns into
 * an HTTP status). Network errors have no answer time and are left out.
 */
class Timing {
  private readonly first = new Map<string, number>();
  private readonly took = new Map<string, number>();
  private seen = 0;
  private timer?: NodeJS.Timeout;

  constructor(private readonly sent: { id: string; mode: string; status: number | 'error' }[]) {}

  start(): void {
    this.timer = setInterval(() => this.look(), 100);
  }

  stop(): void {
    clearInterval(this.timer);
    this.look();
  }

  private look(): void {
    const now = Date.now();
    for (; this.seen < this.sent.length; this.seen++) this.first.set(this.sent[this.seen].id, now);
    for (const s of this.sent) if (typeof s.status === 'number' && !this.took.has(s.id)) this.took.set(s.id, now - (this.first.get(s.id) ?? now));
  }

  summary(loadStart: number) {
    const sync = this.sent.filter((s) => s.mode === 'sync' && this.took.has(s.id)).map((s) => this.took.get(s.id)!).sort((a, b) => a - b);
    const q = (f: number) => (sync.length ? sync[Math.min(sync.length - 1, Math.floor(f * sync.length))] : 0);
    const slow = this.sent.filter((s) => (this.took.get(s.id) ?? 0) > 10_000).map((s) => ({
      at: Math.round(((this.first.get(s.id) ?? loadStart) - loadStart) / 100) / 10, mode: s.mode, status: String(s.status), ms: this.took.get(s.id)!, id: s.id,
    }));
    return { syncP50Ms: q(0.5), syncP99Ms: q(0.99), maxMs: Math.max(0, ...this.took.values()), slow: slow.slice(0, 10), slowCount: slow.length };
  }
}

/** What the final records say beyond the audit: redeliveries, and each failure's message. */
async function details(redis: Redis, sent: { id: string }[], loadStart: number) {
  let redelivered = 0;
  const byWhat = new Map<string, { what: string; count: number; at: number[]; ids: string[] }>();
  for (let i = 0; i < sent.length; i += 500) {
    const batch = sent.slice(i, i + 500);
    const raws = await redis.mget(batch.map((s) => keys.activation(s.id)));
    for (const raw of raws) {
      if (!raw) continue;
      const r = JSON.parse(raw) as ActivationRecord;
      if (!FINAL_STATUSES.includes(r.status)) continue;
      if ((r.attempt ?? 1) > 1) redelivered++;
      if (r.status === 'success') continue;
      const what = `${r.status}: ${(r.error?.message ?? '').slice(0, 200)}`;
      const e = byWhat.get(what) ?? { what, count: 0, at: [], ids: [] };
      e.count++;
      if (e.ids.length < 5) {
        e.ids.push(`${r.activationId} (attempt ${r.attempt ?? 1}, ${r.start ?? 'no start'}, invoker ${r.invoker ?? '?'})`);
        e.at.push(Math.round(((r.endedAt ?? r.queuedAt) - loadStart) / 100) / 10);
      }
      byWhat.set(what, e);
    }
  }
  return { redelivered, failures: [...byWhat.values()].sort((x, y) => y.count - x.count) };
}

function functionSource(): { manifest: string; code: string } {
  return {
    manifest: JSON.stringify({ name: FUNCTION_NAME, runtime: 'node20', handler: 'index.handler', memoryMB: 64, timeoutMs: 10_000, concurrency: 4 }, null, 2),
    code: `// Deployed by the chaos run: sleeps 100-300 ms and says who it is.
exports.handler = async (event, ctx) => {
  await new Promise((r) => setTimeout(r, 100 + Math.floor(Math.random() * 200)));
  return { id: ctx.activationId, attempt: ctx.attempt };
};
`,
  };
}

/** Races `p` against the interruption; resolves to undefined if interrupted first. */
function unlessAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return Promise.race([p, new Promise<undefined>((r) => signal.addEventListener('abort', () => r(undefined), { once: true }))]);
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv);
  const rng = rngFrom(args.seed);
  const interrupt = new AbortController(); // first Ctrl-C: stop the run, then clean up as usual
  const force = new AbortController(); // second: stop waiting for the platform to stop by itself
  let signals = 0;
  const onSignal = (sig: string) => {
    signals++;
    if (signals === 1) {
      progress(`${sig}: stopping the run; cleaning up (Ctrl-C again to stop waiting for kiln)`);
      interrupt.abort();
    } else if (signals === 2) {
      progress(`${sig}: no more waiting; killing what is left`);
      force.abort();
    }
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => onSignal(sig));
  // A reader that went away (`| head`) must not end the run before it cleans up: it runs its
  // platform in a process group of its own, which nothing else would stop.
  for (const out of [process.stdout, process.stderr]) out.on('error', () => undefined);

  const report: ChaosReport = {
    ok: false, interrupted: false, seed: args.seed, minutes: args.minutes, durationS: 0, loadS: 0,
    platform: { stateDir: '', invokerId: '', url: '' },
    faults: { total: 0, byKind: {}, list: [] }, invocations: null, leftovers: null, purged: null, problems: [],
  };
  const workDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-chaos-fn-'));
  let p: Platform | undefined;
  let chaos: Chaos | undefined;
  let redis: Redis | undefined;
  let tracker: NodeJS.Timeout | undefined;
  let load: Load | undefined;
  let loadStopped: Promise<void> | undefined;
  let timing: Timing | undefined;
  try {
    const src = functionSource();
    await fsp.writeFile(path.join(workDir, 'kiln.json'), src.manifest);
    await fsp.writeFile(path.join(workDir, 'index.js'), src.code);

    p = await Platform.create({
      env: { KILN_JOB_LOCK_MS: '2000', KILN_REDIS_APPENDFSYNC: 'always', KILN_PEER_SWEEP_MS: '2000', KILN_PREWARM_COUNT: '1' },
    });
    report.platform = { stateDir: p.stateDir, invokerId: p.invokerId, url: '' };
    progress(`seed ${args.seed}, ${args.minutes} min; starting kiln in ${p.stateDir} (invoker ${p.invokerId})`);
    await p.start(interrupt.signal);
    report.platform.url = p.url;
    const platform = p;
    chaos = new Chaos(p, rng, interrupt.signal);
    const c = chaos;
    tracker = setInterval(() => platform.track(c.seconds.map((s) => s.child.pid ?? 0).filter(Boolean)), 1000);

    const deployed = await deployDirectory(new KilnClient({ url: p.url, key: p.key }), workDir);
    progress(`kiln at ${p.url}; deployed ${deployed.name} v${deployed.version} in '${deployed.namespace}'; load ${PER_SECOND}/s, half sync, half async`);

    load = new Load({ url: p.url, key: p.key, fn: FUNCTION_NAME, perSecond: PER_SECOND, syncShare: 0.5, event: {} });
    const started = Date.now();
    timing = new Timing(load.sent);
    load.start();
    timing.start();
    chaos.startClock();
    await chaos.run(started + args.minutes * 60_000);
    loadStopped = load.stop();
    report.loadS = Math.round((Date.now() - started) / 100) / 10;
    progress(`load stopped after ${report.loadS} s (${load.sent.length} sent); waiting for the calls in flight`);
    const drainStart = Date.now();
    if (!(await within(unlessAborted(loadStopped.then(() => true), interrupt.signal), 130_000, false))) {
      if (!interrupt.signal.aborted) report.problems.push('calls still in flight 130 s after the load stopped');
    }
    timing.stop();
    const drained = (Date.now() - drainStart) / 1000;
    if (drained > 5) progress(`the last calls in flight took ${drained.toFixed(1)} s to answer`);
    for (const pid of [...chaos.stopped]) chaos.cont(pid);

    if (!interrupt.signal.aborted && chaos.seconds.length) {
      const unswept = await chaos.sweptSeconds(45_000);
      if (unswept.length) report.problems.push(`what the killed invoker(s) ${unswept.join(', ')} left was not removed within 45 s`);
    }

    redis = new Redis({ path: p.redisSocket, maxRetriesPerRequest: 3, lazyConnect: true, connectTimeout: 5000 });
    redis.on('error', () => undefined);
    for (let i = 0; ; i++) {
      const up = await redis.connect().then(() => true, () => false);
      if (up || i >= 20 || force.signal.aborted) {
        if (!up) throw new Error(`cannot connect to kiln's Redis at ${p.redisSocket}`);
        break;
      }
      redis.disconnect();
      await sleep(1000);
    }
    const namespace = deployed.namespace;
    if (!interrupt.signal.aborted) {
      progress(`waiting up to ${SETTLE_MS / 1000} s for every accepted call to end`);
      await within(unlessAborted(settle(redis, load.sent, SETTLE_MS), interrupt.signal), SETTLE_MS + 15_000, undefined);
    }
    const a: Audit | undefined = await within(audit(redis, namespace, load.sent), 60_000, undefined);
    if (!a) report.problems.push('the audit did not finish within 60 s (Redis not answering?)');
    else {
      const httpStatuses: Record<string, number> = {};
      for (const s of load.sent) httpStatuses[String(s.status)] = (httpStatuses[String(s.status)] ?? 0) + 1;
      const lostIds = new Set([...a.unfinished, ...a.answeredButUnknown]);
      report.invocations = {
        sent: a.sent, accepted: a.accepted, answered: a.answered, completed: a.completed, failedByCode: a.failedByCode, httpStatuses,
        lost: lostIds.size, lostIds: { unfinished: a.unfinished, answeredButUnknown: a.answeredButUnknown },
        doubled: a.doubled.length, doubledIds: a.doubled,
        latency: timing.summary(started),
        ...(await within(details(redis, load.sent, started), 60_000, { redelivered: -1, failures: [] })),
      };
    }
  } catch (e) {
    report.problems.push(`run failed: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    report.interrupted = interrupt.signal.aborted;
    if (tracker) clearInterval(tracker);
    timing?.stop();
    if (chaos) for (const pid of [...chaos.stopped]) chaos.cont(pid);
    redis?.disconnect();
    if (load && !loadStopped) loadStopped = load.stop(); // stops starting calls; the ones in flight end with the platform
    if (chaos) {
      await chaos.stopSeconds(force.signal);
      // Interrupted soon after a second invoker was killed: the live invoker removes what it
      // left once its heartbeat expired (10 s); wait for that rather than leave it behind.
      if (interrupt.signal.aborted && chaos.seconds.length && p?.running) {
        progress('waiting (up to 20 s) for the live invoker to remove what the killed one left');
        await chaos.sweptSeconds(20_000, force.signal);
      }
      report.faults = { total: chaos.faults.length, byKind: {}, list: chaos.faults };
      for (const f of chaos.faults) report.faults.byKind[f.kind] = (report.faults.byKind[f.kind] ?? 0) + 1;
      report.problems.push(...chaos.problems);
    }
    if (p) {
      progress('stopping kiln (SIGTERM)');
      if (!(await p.stop(90_000, force.signal))) report.problems.push('kiln did not stop within 90 s of SIGTERM (or was killed on a second Ctrl-C): SIGKILL');
      await sleep(300); // let the kernel finish reaping before looking
      report.leftovers = await leftovers(p);
      if (!isClean(report.leftovers)) {
        progress('kiln left things behind; removing them');
        report.purged = await purge(p);
      }
      if (!(await removeStateDir(p))) report.problems.push(`state dir ${p.stateDir} not removed (something is still mounted under it)`);
    }
    await fsp.rm(workDir, { recursive: true, force: true }).catch(() => undefined);
    if (loadStopped) await within(loadStopped, 5_000, undefined);
  }
  report.durationS = Math.round((Date.now() - t0) / 100) / 10;
  const inv = report.invocations;
  report.ok = !report.interrupted && !!inv && inv.lost === 0 && inv.doubled === 0 && !!report.leftovers && isClean(report.leftovers) && !report.problems.some((x) => x.startsWith('run failed'));
  if (p && process.env.KILN_CHAOS_LOG) await fsp.writeFile(process.env.KILN_CHAOS_LOG, p.output).catch(() => undefined);
  if (args.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else {
    process.stdout.write(render(report));
    if (!report.ok && p && p.output.trim()) {
      process.stderr.write(`\nlast lines kiln printed (set KILN_CHAOS_LOG=FILE to keep all of it):\n${p.output.trim().split('\n').slice(-30).join('\n')}\n`);
    }
  }
  return report.ok ? 0 : 1;
}

function render(r: ChaosReport): string {
  const L: string[] = [];
  const list = (xs: string[]) => (xs.length ? xs.map((x) => `\n      ${x}`).join('') : ' none');
  L.push('', `kiln chaos run: ${r.ok ? 'PASSED' : 'FAILED'}${r.interrupted ? ' (interrupted)' : ''}`);
  L.push(`  seed ${r.seed} (again: npm run chaos -- --seed ${r.seed} --minutes ${r.minutes})`);
  L.push(`  duration ${r.durationS} s in all, load and faults ${r.loadS} s`);
  L.push(`  faults injected: ${r.faults.total}${Object.keys(r.faults.byKind).length ? ` (${Object.entries(r.faults.byKind).map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}`);
  for (const f of r.faults.list) {
    const back = f.recoveredMs !== undefined ? `; back after ${(f.recoveredMs / 1000).toFixed(1)} s` : '';
    L.push(`    ${`${f.at.toFixed(1)}s`.padStart(7)}  ${f.kind.padEnd(15)} ${f.detail}${back}${f.skipped ? ` [not injected: ${f.skipped}]` : ''}`);
  }
  const i = r.invocations;
  if (i) {
    const failed = Object.entries(i.failedByCode);
    L.push(`  sent ${i.sent}, accepted ${i.accepted}, completed ${i.completed}, failed ${failed.length ? failed.map(([k, n]) => `${k} ${n}`).join(', ') : '0'}`);
    L.push(`  HTTP answers: ${Object.entries(i.httpStatuses).sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);
    if (r.interrupted && i.lost) L.push(`  not final yet ${i.lost} (interrupted: the run did not wait for them to end; not counted as lost)`);
    else L.push(`  lost ${i.lost}${i.lost ? ` (no final record: ${i.lostIds.unfinished.length}; answered but no record: ${i.lostIds.answeredButUnknown.length}): ${[...i.lostIds.unfinished, ...i.lostIds.answeredButUnknown].slice(0, 10).join(' ')}` : ''}`);
    L.push(`  doubled ${i.doubled}${i.doubled ? `: ${i.doubledIds.slice(0, 10).join(' ')}` : ''}`);
    L.push(`  sync answer time p50 ${i.latency.syncP50Ms} ms, p99 ${i.latency.syncP99Ms} ms; slowest answer ${(i.latency.maxMs / 1000).toFixed(1)} s`);
    if (i.latency.slowCount) {
      L.push(`  answered after more than 10 s: ${i.latency.slowCount}`);
      for (const x of i.latency.slow) L.push(`      sent at ${x.at}s ${x.mode} -> ${x.status} after ${(x.ms / 1000).toFixed(1)} s  ${x.id}`);
    }
    L.push(`  delivered again (attempt > 1) ${i.redelivered}`);
    for (const f of i.failures) L.push(`  failed ${f.count}x ${f.what}`, ...f.ids.map((id, k) => `      at ${f.at[k]}s ${id}`));
  } else L.push('  invocations: not audited');
  const l = r.leftovers;
  if (l) {
    if (isClean(l)) L.push('  leftovers: none');
    else {
      L.push(`  leftovers after kiln stopped:`);
      L.push(`    containers:${list(l.containers)}`, `    mounts:${list(l.mounts)}`, `    cgroups:${list(l.cgroups)}`, `    processes:${list(l.processes)}`);
      if (r.purged) L.push(`    after the chaos run removed them itself: ${isClean(r.purged) ? 'clean' : JSON.stringify(r.purged)}`);
    }
  } else L.push('  leftovers: not checked (kiln never started)');
  if (r.problems.length) L.push('  problems:', ...r.problems.map((x) => `    ${x}`));
  L.push('');
  return L.join('\n');
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`chaos: ${e instanceof Error ? e.stack : e}`);
    process.exit(1);
  },
);
