// One runner for every external command (runc, mount, tar...): a timeout, and a typed error
// carrying the exit status and stderr, so callers never parse failures by hand. tryRun() is the
// same without the throw, for the bench and the chaos run, which report what they see.
import { execFile } from 'node:child_process';

export class CommandError extends Error {
  constructor(
    public readonly command: string,
    public readonly exitCode: number | null,
    public readonly stderr: string,
    public readonly timedOut: boolean,
  ) {
    super(`${command} ${timedOut ? 'timed out' : `exited ${exitCode}`}: ${stderr.trim().slice(0, 500)}`);
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  timeoutMs?: number;
  input?: string;
  cwd?: string;
}

export function run(file: string, args: string[], opts: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 30_000, killSignal: 'SIGKILL', maxBuffer: 16 * 2 ** 20, cwd: opts.cwd },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
        const exit = typeof e.code === 'number' ? e.code : null;
        reject(new CommandError(`${file} ${args.slice(0, 3).join(' ')}`, exit, String(stderr || e.message), !!e.killed));
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

export interface Ended {
  code: number; // 127: it could not be started (as a shell says)
  stdout: string;
  stderr: string;
}

/** Runs a command and says how it ended; never throws. For tools that report, not act. */
export function tryRun(file: string, args: string[], timeoutMs = 30_000): Promise<Ended> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 2 ** 20 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
      const code = !e ? 0 : typeof e.code === 'number' ? e.code : 127;
      resolve({ code, stdout: String(stdout), stderr: String(stderr || (e && !stderr ? e.message : '')) });
    });
  });
}
