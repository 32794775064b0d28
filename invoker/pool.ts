// The warm pool: containers kept per function version (namespace/name@version) after a call,
// reused while healthy, removed when idle too long or after any failure. A container serves
// one function version only, and at most `concurrency` calls at once.
import { Logger } from '../common/log';
import { StartKind } from '../common/types';
import { Container, ContainerEnv, ContainerSpec } from './container';

export interface Acquired {
  container: Container;
  start: StartKind;
  initMs: number;
}

export class Pool {
  private readonly byFn = new Map<string, Container[]>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly env: ContainerEnv, private readonly idleTimeoutMs: number, private readonly log: Logger) {
    this.sweeper = setInterval(() => void this.sweep(), Math.min(10_000, Math.max(100, idleTimeoutMs / 4)));
    this.sweeper.unref();
  }

  async acquire(spec: ContainerSpec): Promise<Acquired> {
    if (this.closed) throw new Error('the invoker is shutting down');
    const warm = (this.byFn.get(spec.fnKey) ?? []).find((c) => c.healthy && c.inFlight < spec.config.concurrency);
    if (warm) {
      warm.inFlight++; // reserved until release()
      return { container: warm, start: 'warm', initMs: 0 };
    }
    const t = performance.now();
    const container = await Container.start(this.env, spec);
    container.inFlight++;
    const list = this.byFn.get(spec.fnKey) ?? [];
    list.push(container);
    this.byFn.set(spec.fnKey, list);
    if (this.closed) {
      await this.remove(container);
      throw new Error('the invoker is shutting down');
    }
    return { container, start: 'cold', initMs: performance.now() - t };
  }

  /** Ends the reservation made by acquire(); a container that failed is removed. */
  async release(c: Container): Promise<void> {
    c.inFlight--;
    if (!c.healthy) await this.remove(c);
  }

  all(): Container[] {
    return [...this.byFn.values()].flat();
  }

  async remove(c: Container): Promise<void> {
    const list = this.byFn.get(c.spec.fnKey);
    if (list) {
      const rest = list.filter((x) => x !== c);
      if (rest.length) this.byFn.set(c.spec.fnKey, rest);
      else this.byFn.delete(c.spec.fnKey);
    }
    try {
      await c.destroy();
    } catch (e) {
      this.log.error({ err: e, container: c.id }, 'failed to remove a container');
    }
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    for (const c of this.all()) {
      if (c.inFlight === 0 && now - c.lastUsed > this.idleTimeoutMs) {
        this.log.debug({ container: c.id }, 'removing idle container');
        await this.remove(c);
      }
    }
  }

  async shutdown(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    await Promise.all(this.all().map((c) => this.remove(c)));
  }
}
