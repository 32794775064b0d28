// Runs one platform process (redis-server, gateway or invoker) and restarts it when it dies,
// until stopped.
import { ChildProcess, spawn } from 'node:child_process';
import { Logger } from '../common/log';

export interface SupervisedOptions {
  env?: NodeJS.ProcessEnv;
  restartDelayMs?: number;
  /** Runs before every start, restarts included (e.g. removing a dead server's socket). */
  beforeStart?: () => Promise<void>;
}

export class Supervised {
  private child?: ChildProcess;
  private stopping = false;
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly name: string, private readonly command: string, private readonly args: string[], private readonly log: Logger, private readonly opts: SupervisedOptions = {}) {}

  async start(): Promise<ChildProcess> {
    await this.opts.beforeStart?.();
    if (this.stopping) throw new Error(`${this.name} is stopping`); // stop() came during beforeStart
    const child = spawn(this.command, this.args, { env: this.opts.env ?? process.env, stdio: ['ignore', 'inherit', 'inherit'] });
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        resolve();
        if (this.stopping) return;
        this.log.error({ process: this.name, code, signal }, 'process died; restarting');
        const restart = () => !this.stopping && void this.start().catch((err) => this.log.error({ err, process: this.name }, 'did not restart'));
        setTimeout(restart, this.opts.restartDelayMs ?? 500);
      });
    });
    return child;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGTERM');
    const killer = setTimeout(() => c.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(killer);
  }
}
