// The one interface in front of the OCI runtime CLI (runc, or crun where the host allows).
// Every call goes through the common process runner: a timeout and a typed error.
import { spawn } from 'node:child_process';
import { CommandError, run } from '../../common/process';
import { OutputTail } from '../output';

export interface OciRuntime {
  /** Creates and starts a container from a bundle; its stdout and stderr go to `output`. */
  run(id: string, bundle: string, output: OutputTail): Promise<void>;
  /** Removes a container whatever its state (kills it first). Absent containers are fine. */
  delete(id: string): Promise<void>;
  list(): Promise<string[]>;
}

export class RuncRuntime implements OciRuntime {
  constructor(private readonly binary: string, private readonly root: string) {}

  async run(id: string, bundle: string, output: OutputTail): Promise<void> {
    // `run --detach` creates and starts in one process (one fewer exec than create + start).
    // --no-new-keyring: a session keyring per container would count against the kernel's
    // 200 keys per user, and every container runs as the same unprivileged host uid.
    // The container inherits runc's stdio pipes, so runc's own errors come through them too.
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(this.binary, ['--root', this.root, 'run', '--detach', '--no-new-keyring', '--bundle', bundle, id], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      output.follow(child.stdout!);
      output.follow(child.stderr!);
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.on('error', reject);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    if (code !== 0) throw new CommandError(`${this.binary} run ${id}`, code, output.text().slice(-2000), code === null);
  }

  async delete(id: string): Promise<void> {
    try {
      await run(this.binary, ['--root', this.root, 'delete', '--force', id], { timeoutMs: 15_000 });
    } catch (e) {
      if (e instanceof CommandError && /does not exist|not found/.test(e.stderr)) return;
      throw e;
    }
  }

  async list(): Promise<string[]> {
    const out = await run(this.binary, ['--root', this.root, 'list', '--quiet'], { timeoutMs: 10_000 });
    return out.split('\n').filter(Boolean);
  }
}
