// Runs one platform process (gateway or invoker) and restarts it when it dies, until stopped.
import { ChildProcess, spawn } from 'node:child_process';
import { Logger } from '../common/log';

const RESTART_DELAY_MS = 500;

export class Supervised {
  private child?: ChildProcess;
  private stopping = false;
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly name: string, private readonly script: string, private readonly env: NodeJS.ProcessEnv, private readonly log: Logger) {}


  start(): void {
    const child = spawn(process.execPath, [this.script], { env: this.env, stdio: ['ignore', 'inherit', 'inherit'] });
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        resolve();
        if (this.stopping) return;
        this.log.error({ process: this.name, code, signal }, 'process died; restarting');
        setTimeout(() => !this.stopping && this.start(), RESTART_DELAY_MS);
      });
    });
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
