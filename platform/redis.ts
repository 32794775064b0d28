// The embedded Redis: a redis-server child on a unix socket in the state dir, with the
// append-only file on, used when REDIS_URL is unset. If it dies it is started again on the same
// data (the AOF), like the gateway and invoker; it stops when the platform stops.
import { ChildProcess } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { Logger } from '../common/log';
import { embeddedRedisSocket } from '../common/redis';
import { Supervised } from './supervisor';

export class EmbeddedRedis {
  readonly socket: string;
  private readonly server: Supervised;

  constructor(stateDir: string, log: Logger, fsync = process.env.KILN_REDIS_APPENDFSYNC ?? 'everysec') {
    this.socket = embeddedRedisSocket(stateDir);
    const dir = path.dirname(this.socket);
    this.server = new Supervised('redis-server', 'redis-server', [
      '--port', '0', '--unixsocket', this.socket, '--unixsocketperm', '700', '--dir', dir,
      '--appendonly', 'yes', '--appendfsync', fsync, '--save', '', '--daemonize', 'no', '--loglevel', 'warning',
    ], log, {
      restartDelayMs: 300,
      beforeStart: async () => {
        await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
        await fsp.rm(this.socket, { force: true }); // a killed server's socket
      },
    });
  }

  async start(): Promise<void> {
    await waitForRedis(this.socket, await this.server.start());
  }

  async stop(): Promise<void> {
    await this.server.stop(10_000);
    await fsp.rm(this.socket, { force: true });
  }
}

async function waitForRedis(socket: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await pong(socket))) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error('redis-server did not start');
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Whether a server on the socket answers PING (a bare probe: a client library would linger). */
function pong(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.createConnection(socket, () => c.write('PING\r\n'));
    const done = (ok: boolean) => {
      c.destroy();
      resolve(ok);
    };
    c.setTimeout(1000, () => done(false));
    c.once('data', (d) => done(d.toString().startsWith('+PONG')));
    c.once('error', () => done(false));
    c.once('close', () => done(false)); // closed without an answer
  });
}
