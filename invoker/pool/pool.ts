// The warm pool. Each container is an Entry whose state changes only through move(), which
// checks the move against states.ts, logs it, counts it and arms the timer that belongs to the
// new state: ready ──pause grace──▶ frozen ──idle timeout──▶ removing. Where a call goes is
// decided by place(), what to remove for room by evictionsFor() (both pure, placement.ts).
// Memory is reserved when a container is started, so the pool never promises more than the
// invoker's capacity; a call that cannot get room waits, and gives up after a bound.
import { Logger } from '../../common/log';
import { StartKind } from '../../common/types';
import { evictionsFor, place, Slot } from './placement';
import { assertMove, State } from './states';

/** What the pool needs of a container; the real one is invoker/container.ts, tests use fakes. */
export interface PoolContainer<S extends FunctionSpec = FunctionSpec> {
  readonly id: string;
  healthy: boolean;
  freeze(): Promise<number>;
  thaw(): Promise<number>;
  specialise(spec: S): Promise<void>;
  destroy(): Promise<void>;
}

export interface FunctionSpec {
  fnKey: string; // namespace/name@version: what a container serves
  fn: string; // namespace/name
  version: number;
  runtime: string;
  memoryMB: number;
  concurrency: number;
}

export interface ContainerFactory<C, S> {
  cold(spec: S): Promise<C>;
  stem(runtime: string, memoryMB: number): Promise<C>;
}

export interface PoolOptions {
  capacityMB: number;
  pauseGraceMs: number;
  idleTimeoutMs: number;
  prewarm: Record<string, { count: number; memoryMB: number }>; // per runtime
  waitForRoomMs: number;
  log: Logger;
  onTransition?: (from: State, to: State) => void;
  onFreeze?: (ms: number) => void;
  onThaw?: (ms: number) => void;
}

export class NoCapacity extends Error {
  constructor(neededMB: number) {
    super(`no room for a ${neededMB} MB container on this invoker`);
    this.name = 'NoCapacity';
  }
}

export class Entry<C extends PoolContainer<any>> implements Slot {
  state: State = 'starting';
  inFlight = 0;
  lastUsed = Date.now();
  readonly createdAt = Date.now();
  retiring = false;
  preparing = false; // being started, thawed or specialised: not yet shareable
  ready?: Promise<boolean>; // while preparing: whether it came up (calls may wait to share it)
  startKind?: StartKind;
  container?: C;
  timer?: NodeJS.Timeout;
  op: Promise<unknown> = Promise.resolve(); // freezer writes, in order
  removal?: Promise<void>; // once removing: ends when the container is gone
  constructor(readonly id: string, public spec: FunctionSpec | null, readonly runtime: string, public memoryMB: number) {}

  /** What it serves; null for a stem cell not yet specialised. */
  get fnKey(): string | null {
    return this.spec?.fnKey ?? null;
  }
}

export interface Lease<C> {
  container: C;
  start: StartKind;
  initMs: number;
}

let nextId = 0;

export class Pool<C extends PoolContainer<S>, S extends FunctionSpec> {
  private readonly entries = new Map<string, Entry<C>>();
  private readonly latest = new Map<string, number>(); // namespace/name -> newest version seen
  private roomWaiters: (() => void)[] = [];
  private readonly starting = new Set<Promise<unknown>>(); // stem cells being started
  private stemTaken = false; // a stem cell was used: replace it when a call ends
  private retired: Entry<C>[] = []; // idle containers of superseded versions: removed when a call ends
  private stemsShort = false; // a stem cell did not fit: try again when a removal frees memory
  private closed = false;

  constructor(private readonly factory: ContainerFactory<C, S>, private readonly o: PoolOptions) {}

  slots(): readonly Entry<C>[] {
    return [...this.entries.values()];
  }

  usedMB(): number {
    return this.slots().reduce((n, e) => n + e.memoryMB, 0);
  }

  /** Starts the stem cells; call once at start and after one is used. */
  replenish(): void {
    for (const [runtime, { count, memoryMB }] of Object.entries(this.o.prewarm)) {
      const have = this.slots().filter((e) => e.fnKey === null && e.runtime === runtime && e.state !== 'removing').length;
      for (let i = have; i < count; i++) {
        if (this.closed) return;
        if (evictionsFor(this.slots(), memoryMB, this.o.capacityMB)?.length !== 0) {
          this.stemsShort = true; // never evict for a stem
          return;
        }
        const e = this.add(null, runtime, memoryMB);
        const started = (async () => {
          try {
            const c = await this.factory.stem(runtime, memoryMB);
            e.container = c;
            if (e.state !== 'starting') return await c.destroy(); // removed while it started
            e.op = c.freeze().then((ms) => this.o.onFreeze?.(ms));
            await e.op;
            if (e.state === 'starting') this.move(e, 'prewarm');
          } catch (err) {
            // Failed to start or to freeze: never leave it counted as starting.
            this.o.log.error({ err, runtime }, 'prewarm container failed to start');
            if (e.container) e.container.healthy = false;
            e.op = Promise.resolve();
            await this.remove(e);
          }
        })().catch((err) => this.o.log.error({ err, runtime }, 'prewarm container could not be removed'));
        this.starting.add(started);
        void started.finally(() => this.starting.delete(started));
      }
    }
  }

  async acquire(spec: S): Promise<Lease<C>> {
    this.retireOlderThan(spec);
    try {
      return await this.lease(spec);
    } catch (e) {
      this.removeRetired(); // no call will end to do it
      throw e;
    }
  }

  /** A container for the call: warm, thawed, specialised or started cold, waiting for room. */
  private async lease(spec: S): Promise<Lease<C>> {
    const deadline = Date.now() + this.o.waitForRoomMs;
    for (;;) {
      if (this.closed) throw new Error('the invoker is shutting down');
      const p = place(this.slots(), spec);
      if (p.kind === 'warm') return this.takeWarm(p.slot as Entry<C>);
      if (p.kind === 'thawed') {
        const lease = await this.takeFrozen(p.slot as Entry<C>);
        if (lease) return lease;
        continue;
      }
      if (p.kind === 'prewarm') {
        const lease = await this.takeStem(p.slot as Entry<C>, spec);
        if (lease) return lease;
        continue;
      }
      const starting = this.joinable(spec); // looked up without awaiting: no one slips in between
      if (starting) {
        const joined = await this.join(starting);
        if (joined) return joined;
        continue;
      }
      const evict = evictionsFor(this.slots(), spec.memoryMB, this.o.capacityMB);
      // Containers being removed will free their memory within moments: wait for that rather
      // than evict others that are still useful.
      if (evict?.length && this.fitsOnceRemoved(spec.memoryMB) && Date.now() < deadline) {
        await this.roomChanged(deadline - Date.now());
        continue;
      }
      if (evict) return this.startCold(spec, evict as Entry<C>[]);
      if (Date.now() > deadline) throw new NoCapacity(spec.memoryMB);
      await this.roomChanged(deadline - Date.now());
    }
  }

  /** Ends a call. A container that failed, or serves a superseded version, is removed. */
  async release(container: C): Promise<void> {
    let e: Entry<C> | undefined;
    for (const x of this.entries.values()) {
      if (x.container === container) {
        e = x;
        break;
      }
    }
    if (!e || e.state === 'removing' || e.state === 'removed') return; // shutting down, or evicted
    e.inFlight--;
    e.lastUsed = Date.now();
    // A failed container takes no more calls; it is removed once the calls still running in it
    // (concurrency > 1) have ended, each on its own deadline, not under them. Removed in the
    // background: the call's answer does not wait for its container's removal.
    if (!container.healthy) e.retiring = true;
    if (e.retiring && e.inFlight === 0) this.removeLater(e);
    else if (e.inFlight === 0) this.move(e, 'ready');
    this.notifyRoom();
    // Superseded containers and a used stem cell are removed and replaced now, not while the
    // call ran: on a small host the work would have competed with the call for the CPU.
    this.removeRetired();
    if (this.stemTaken) {
      this.stemTaken = false;
      this.replenish();
    }
  }

  async shutdown(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.starting]);
    await Promise.all(this.slots().map((e) => this.remove(e)));
    this.notifyRoom();
  }

  /** Marks a container as being made ready; the returned function says how that ended. */
  private prepare(e: Entry<C>, kind: StartKind): (ok: boolean) => void {
    e.preparing = true;
    e.startKind = kind;
    let done!: (ok: boolean) => void;
    e.ready = new Promise<boolean>((r) => (done = r));
    return (ok) => {
      e.preparing = false;
      e.ready = undefined;
      done(ok);
    };
  }

  /**
   * A call that would start a container while one of its function is still coming up with room
   * for more (concurrency > 1) waits for that one instead: a burst does not start a container
   * per call.
   */
  private joinable(spec: S): Entry<C> | undefined {
    if (spec.concurrency < 2) return undefined;
    return this.slots().find((x) => x.fnKey === spec.fnKey && x.preparing && x.ready && !x.retiring && x.inFlight < spec.concurrency);
  }

  private async join(e: Entry<C>): Promise<Lease<C> | null> {
    e.inFlight++;
    const t = performance.now();
    if (await e.ready) return { container: e.container!, start: e.startKind ?? 'cold', initMs: performance.now() - t };
    e.inFlight--;
    return null; // it failed: look again
  }

  private takeWarm(e: Entry<C>): Lease<C> {
    e.inFlight++;
    if (e.state !== 'busy') this.move(e, 'busy');
    return { container: e.container!, start: 'warm', initMs: 0 };
  }

  private async takeFrozen(e: Entry<C>): Promise<Lease<C> | null> {
    e.inFlight++;
    const done = this.prepare(e, 'thawed'); // other calls may share it only once it is thawed
    this.move(e, 'busy'); // reserved before the first await: no one else takes it
    try {
      await e.op; // a freeze still being written
      const ms = await e.container!.thaw();
      this.o.onThaw?.(ms);
      done(true);
      return { container: e.container!, start: 'thawed', initMs: ms };
    } catch (err) {
      this.o.log.warn({ err, container: e.id }, 'thaw failed; removing the container');
      done(false);
      await this.remove(e);
      return null;
    }
  }

  private async takeStem(e: Entry<C>, spec: S): Promise<Lease<C> | null> {
    const grow = spec.memoryMB - e.memoryMB;
    const evict = grow > 0 ? evictionsFor(this.slots(), grow, this.o.capacityMB, new Set([e.id])) : [];
    if (!evict) return null; // does not fit as this function: leave the stem for another
    e.inFlight++;
    const done = this.prepare(e, 'prewarm');
    e.spec = spec;
    e.memoryMB = spec.memoryMB; // reserved before the first await, like a cold start
    this.move(e, 'busy');
    const t = performance.now();
    try {
      await Promise.all(evict.map((x) => this.remove(x as Entry<C>)));
      await e.op;
      // Together: the code mount and limits need no running process, and the runtime answers
      // the specialising request as soon as it is thawed.
      const [thawMs] = await Promise.all([e.container!.thaw(), e.container!.specialise(spec)]);
      this.o.onThaw?.(thawMs);
      done(true);
      this.stemTaken = true;
      return { container: e.container!, start: 'prewarm', initMs: performance.now() - t };
    } catch (err) {
      this.o.log.warn({ err, container: e.id }, 'specialising a prewarmed container failed');
      done(false);
      await this.remove(e);
      this.replenish();
      return null;
    }
  }

  private async startCold(spec: S, evict: Entry<C>[]): Promise<Lease<C>> {
    // Reserved before the first await, so a call woken by the evictions cannot take the room.
    const e = this.add(spec, spec.runtime, spec.memoryMB);
    e.inFlight++;
    const done = this.prepare(e, 'cold');
    const t = performance.now();
    try {
      await Promise.all(evict.map((x) => this.remove(x)));
      e.container = await this.factory.cold(spec);
    } catch (err) {
      done(false);
      await this.remove(e);
      throw err;
    }
    if (e.state !== 'starting') {
      done(false);
      await e.container.destroy(); // the pool shut down meanwhile
      throw new Error('the invoker is shutting down');
    }
    this.move(e, 'busy');
    done(true);
    return { container: e.container, start: 'cold', initMs: performance.now() - t };
  }

  private add(spec: FunctionSpec | null, runtime: string, memoryMB: number): Entry<C> {
    const e = new Entry<C>(`c${++nextId}`, spec, runtime, memoryMB);
    this.entries.set(e.id, e);
    return e;
  }

  /** A newer version of a function was called: older ones take no new calls and drain. */
  private retireOlderThan(spec: S): void {
    if ((this.latest.get(spec.fn) ?? 0) >= spec.version) return;
    this.latest.set(spec.fn, spec.version);
    for (const e of this.entries.values()) {
      if (e.spec?.fn !== spec.fn || e.spec.version >= spec.version) continue;
      e.retiring = true;
      if (e.inFlight === 0 && e.state !== 'starting') this.retired.push(e); // busy ones go on release
    }
  }

  private removeRetired(): void {
    for (const e of this.retired.splice(0)) if (e.inFlight === 0) this.removeLater(e);
  }

  private removeLater(e: Entry<C>): void {
    this.remove(e).catch((err) => this.o.log.error({ err, container: e.id }, 'failed to remove a container'));
  }

  /** Whether `neededMB` fits once the containers being removed are gone. */
  private fitsOnceRemoved(neededMB: number): boolean {
    const staying = this.slots().filter((e) => e.state !== 'removing').reduce((n, e) => n + e.memoryMB, 0);
    return staying + neededMB <= this.o.capacityMB;
  }

  /** The one place a state changes: checks the move, and arms the new state's timer. */
  private move(e: Entry<C>, to: State): void {
    assertMove(e.state, to);
    const from = e.state;
    e.state = to;
    clearTimeout(e.timer);
    e.timer = undefined;
    this.o.log.debug({ container: e.container?.id, from, to }, 'container state');
    this.o.onTransition?.(from, to);
    if (to === 'ready') e.timer = this.after(this.o.pauseGraceMs, () => this.freezeIdle(e));
    if (to === 'frozen') e.timer = this.after(Math.max(0, this.o.idleTimeoutMs - this.o.pauseGraceMs), () => this.removeLater(e));
  }

  private after(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  }

  private freezeIdle(e: Entry<C>): void {
    if (e.state !== 'ready') return;
    this.move(e, 'frozen');
    e.op = e.container!.freeze().then(
      (ms) => this.o.onFreeze?.(ms),
      (err) => {
        this.o.log.warn({ err, container: e.id }, 'freeze failed; removing the container');
        e.container!.healthy = false;
        if (e.state === 'frozen') this.removeLater(e);
      },
    );
  }

  /** Removes a container; a removal under way is joined, not started again. */
  private remove(e: Entry<C>): Promise<void> {
    if (e.state === 'removed') return Promise.resolve();
    e.removal ??= this.destroy(e);
    return e.removal;
  }

  private async destroy(e: Entry<C>): Promise<void> {
    this.move(e, 'removing');
    try {
      await e.op.catch(() => undefined);
      await e.container?.destroy();
    } catch (err) {
      this.o.log.error({ err, container: e.container?.id }, 'failed to remove a container');
    } finally {
      this.move(e, 'removed');
      this.entries.delete(e.id);
      this.notifyRoom();
      if (this.stemsShort && !this.closed) {
        this.stemsShort = false;
        this.replenish();
      }
    }
  }

  private roomChanged(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, Math.max(1, ms));
      this.roomWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private notifyRoom(): void {
    const w = this.roomWaiters;
    this.roomWaiters = [];
    for (const f of w) f();
  }
}
