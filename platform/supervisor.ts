// Runs one platform process (redis-server, gateway or invoker) and restarts it when it dies,
// until stopped. A process that keeps dying soon after it starts (a bad configuration, a missing
// file) is restarted after a delay that doubles each time, up to 30 s, instead of in a tight loop.
import { ChildProcess, spawn } from 'node:child_process';
import { stopChild } from './procs';
import { Logger } from '../common/log';

export interface SupervisedOptions {
  env?: NodeJS.ProcessEnv;
  restartDelayMs?: number;
  /** Runs before every start, restarts included (e.g. removing a dead server's socket). */
  beforeStart?: () => Promise<void>;
}

/** A process that dies sooner than this after its start counts as crash-looping. */
const QUICK_DEATH_MS = 5_000;
const MAX_RESTART_DELAY_MS = 30_000;

export class Supervised {
  private child?: ChildProcess;
  private stopping = false;
  private quickDeaths = 0; // in a row

  constructor(readonly name: string, private readonly command: string, private readonly args: string[], private readonly log: Logger, private readonly opts: SupervisedOptions = {}) {}

  async start(): Promise<ChildProcess> {
    await this.opts.beforeStart?.();
    if (this.stopping) throw new Error(`${this.name} is stopping`); // stop() came during beforeStart
    const child = spawn(this.command, this.args, { env: this.opts.env ?? process.env, stdio: ['ignore', 'inherit', 'inherit'] });
    const startedAt = Date.now();
    this.child = child;
    child.once('exit', (code, signal) => {
      if (this.stopping) return;
      this.quickDeaths = Date.now() - startedAt < QUICK_DEATH_MS ? this.quickDeaths + 1 : 0;
      const base = this.opts.restartDelayMs ?? 500;
      const restartInMs = Math.min(MAX_RESTART_DELAY_MS, base * 2 ** Math.max(0, this.quickDeaths - 1));
      this.log.error({ process: this.name, code, signal, restartInMs }, 'process died; restarting');
      const restart = () => !this.stopping && void this.start().catch((err) => this.log.error({ err, process: this.name }, 'did not restart'));
      setTimeout(restart, restartInMs);
    });
    return child;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    if (this.child) await stopChild(this.child, graceMs);
  }
}
