// The invoker's side of the runtime protocol: JSON over HTTP over the container's unix socket.
import * as http from 'node:http';
import * as net from 'node:net';

export interface RunReply {
  ok: boolean;
  result?: unknown;
  error?: { message: string; stack?: string };
  logs: string[];
  replyBytes?: number; // the whole reply's size, set by the client
}

export type CallError = NodeJS.ErrnoException & { delivered: boolean };

export class RuntimeClient {
  private readonly agent: http.Agent;

  constructor(private readonly socketPath: string, maxSockets: number) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets });
  }

  /**
   * Rejects with a `CallError`; its `delivered` says whether the runtime had acknowledged the
   * request (sent its response headers) before the connection broke.
   */
  post<T>(route: string, body: unknown, signal?: AbortSignal): Promise<T> {
    const payload = JSON.stringify(body);
    return new Promise((resolve, reject_) => {
      let delivered = false;
      const reject = (e: Error) => reject_(Object.assign(e, { delivered }));
      const req = http.request(
        {
          socketPath: this.socketPath,
          path: route,
          method: 'POST',
          agent: this.agent,
          signal,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        },
        (res) => {
          delivered = true;
          const parts: Buffer[] = [];
          res.on('data', (c) => parts.push(c));
          res.on('end', () => {
            try {
              const body = Buffer.concat(parts);
              const value = JSON.parse(body.toString('utf8'));
              if (value && typeof value === 'object') value.replyBytes = body.length;
              resolve(value as T);
            } catch (e) {
              reject(e as Error);
            }
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Resolves once something accepts connections on the socket; rejects after `timeoutMs`. */
export async function waitForSocket(socketPath: string, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(socketPath);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error('the container exited before its runtime was ready');
    if (Date.now() > deadline) throw new Error(`the runtime did not listen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
