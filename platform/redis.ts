// The embedded Redis: a redis-server child on a unix socket in the state dir, with the
// append-only file on, used when REDIS_URL is unset. It stops when the platform stops.
import { ChildProcess, spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { embeddedRedisSocket } from '../common/redis';

export interface EmbeddedRedis {
  socket: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export async function startEmbeddedRedis(stateDir: string, fsync = process.env.KILN_REDIS_APPENDFSYNC ?? 'everysec'): Promise<EmbeddedRedis> {
  const socket = embeddedRedisSocket(stateDir);
  const dir = path.dirname(socket);
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  await fsp.rm(socket, { force: true });
  const child = spawn('redis-server', [
    '--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', fsync, '--save', '', '--daemonize', 'no', '--loglevel', 'warning',
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitForRedis(socket, child);
  return {
    socket,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await fsp.rm(socket, { force: true });
    },
  };
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
