// Small helpers shared by the benchmark: progress output, timed HTTP requests (TCP or unix
// socket), waiting with a bound, and running commands.
import * as http from 'node:http';

const t0 = performance.now();

/** Progress goes to stderr; stdout is kept for the final table. */
export function progress(msg: string): void {
  const s = ((performance.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench ${s}s] ${msg}\n`);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface TimedResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  ms: number; // request written → last byte of the response read
}

export interface RequestOptions {
  method: string;
  path: string;
  agent: http.Agent;
  host?: string;
  port?: number;
  socketPath?: string;
  headers?: Record<string, string | number>;
  body?: Buffer | string;
  timeoutMs?: number;
}

export function request(o: RequestOptions): Promise<TimedResponse> {
  return new Promise((resolve, reject) => {
    const body = o.body === undefined ? undefined : typeof o.body === 'string' ? Buffer.from(o.body) : o.body;
    const headers: Record<string, string | number> = { ...(o.headers ?? {}) };
    if (body) headers['content-length'] = body.length;
    const started = performance.now();
    const req = http.request(
      { method: o.method, path: o.path, host: o.host, port: o.port, socketPath: o.socketPath, agent: o.agent, headers },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts), ms: performance.now() - started }));
        res.on('error', reject);
      },
    );
    req.setTimeout(o.timeoutMs ?? 30_000, () => req.destroy(new Error(`${o.method} ${o.path}: no answer within ${o.timeoutMs ?? 30_000} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}


/** Polls `check` until it returns a truthy value; throws `what` after `ms`. */
export async function waitFor<T>(what: string, check: () => Promise<T | null | undefined | false>, ms: number, everyMs = 20): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// Commands run by the bench never throw for a non-zero exit: it reports what it saw.
export { tryRun as exec } from '../common/process';

/** Runs `fn` over `items` with at most `limit` at once; stops starting new ones after `deadline`. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>, deadline = Infinity): Promise<(R | undefined)[]> {
  const out: (R | undefined)[] = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length && Date.now() < deadline) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  });
  await Promise.all(lanes);
  return out;
}

export function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
