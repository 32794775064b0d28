// The embedded Redis: a redis-server child on a unix socket in the state dir, with the
// append-only file on, used when REDIS_URL is unset. If it dies it is started again on the same
// data (the AOF), like the gateway and invoker; it stops when the platform stops.
import { ChildProcess, spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { Logger } from '../common/log';
import { embeddedRedisSocket } from '../common/redis';

const RESTART_DELAY_MS = 300;

export class EmbeddedRedis {
  readonly socket: string;
  private child?: ChildProcess;
  private stopping = false;
  private exited: Promise<void> = Promise.resolve();

  constructor(stateDir: string, private readonly log: Logger, private readonly fsync = process.env.KILN_REDIS_APPENDFSYNC ?? 'everysec') {
    this.socket = embeddedRedisSocket(stateDir);
  }


  async start(): Promise<void> {
    const dir = path.dirname(this.socket);
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    await fsp.rm(this.socket, { force: true });
    const child = spawn('redis-server', [
      '--port', '0', '--unixsocket', this.socket, '--unixsocketperm', '700', '--dir', dir,
      '--appendonly', 'yes', '--appendfsync', this.fsync, '--save', '', '--daemonize', 'no', '--loglevel', 'warning',
    ], { stdio: ['ignore', 'inherit', 'inherit'] });
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        resolve();
        if (this.stopping) return;
        this.log.error({ process: 'redis-server', code, signal }, 'redis-server died; restarting');
        setTimeout(() => !this.stopping && void this.start().catch((err) => this.log.error({ err }, 'redis-server did not restart')), RESTART_DELAY_MS);
      });
    });
    await waitForRedis(this.socket, child);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    await fsp.rm(this.socket, { force: true });
  }
}

async function waitForRedis(socket: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
    const r = new Redis({ path: socket, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined); // not up yet: retried below
    try {
      await r.connect();
      if ((await r.ping()) === 'PONG') return;
    } catch {
      if (Date.now() > deadline) throw new Error('redis-server did not start');
      await new Promise((res) => setTimeout(res, 50));
    } finally {
      r.disconnect();
    }
  }
}
