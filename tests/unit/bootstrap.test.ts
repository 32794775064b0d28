// runtimes/node/bootstrap.js, the runtime inside every Node container, run for real as a child
// process listening on a unix socket in a temporary folder (no container needed).
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const BOOTSTRAP = path.resolve(__dirname, '..', '..', 'runtimes', 'node', 'bootstrap.js');

interface Reply {
  ok: boolean;
  result?: unknown;
  error?: { message: string; stack?: string };
  logs?: string[];
}

interface Runtime {
  dir: string;
  socket: string;
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
}

const started: Runtime[] = [];

async function waitForSocket(socket: string, child: ChildProcess, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(socket);
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (child.exitCode !== null) throw new Error(`bootstrap exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error('bootstrap did not listen in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Starts bootstrap.js over a function folder holding `files`. */
async function startRuntime(files: Record<string, string>, env: Record<string, string> = {}): Promise<Runtime> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-boot-'));
  const fnDir = path.join(dir, 'function');
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(fnDir, rel)), { recursive: true });
    fs.writeFileSync(path.join(fnDir, rel), text);
  }
  fs.mkdirSync(fnDir, { recursive: true });
  const socket = path.join(dir, 'k.sock');
  const childEnv: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', KILN_SOCKET: socket, KILN_FUNCTION_DIR: fnDir, ...env };
  const child = spawn(process.execPath, [BOOTSTRAP], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (err += c));
  const rt: Runtime = { dir, socket, child, stdout: () => out, stderr: () => err };
  started.push(rt);
  await waitForSocket(socket, child);
  return rt;
}

async function stopAll(): Promise<void> {
  for (const rt of started.splice(0)) {
    if (rt.child.exitCode === null && rt.child.signalCode === null) {
      const exited = new Promise((r) => rt.child.once('exit', r));
      rt.child.kill('SIGKILL');
      await exited;
    }
    fs.rmSync(rt.dir, { recursive: true, force: true });
  }
}

function post<T = Reply>(rt: Runtime, route: string, body: unknown): Promise<{ status: number; body: T }> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: rt.socket, path: route, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c) => parts.push(c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(parts).toString('utf8')) as T });
          } catch (e) {
            reject(e);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function run(rt: Runtime, event: unknown, activationId = 'a', deadlineIn = 1000): Promise<Reply> {
  const { status, body } = await post(rt, '/run', { event, context: { activationId, functionName: 'fn', deadline: Date.now() + deadlineIn } });
  expect(status).toBe(200);
  return body;
}

/** The text of a captured log line after its timestamp. */
const text = (line: string) => line.replace(/^\S+ /, '');

afterAll(stopAll);

const CJS = `
exports.handler = async (event, context) => {
  switch (event.op) {
    case 'echo': return { event, activationId: context.activationId };
    case 'undefined': return undefined;
    case 'throw': throw new TypeError('boom: ' + event.why);
    case 'throwString': throw 'just a string';
    case 'later':
      return new Promise((resolve) => {
        setTimeout(() => { throw new RangeError('thrown from a timer'); }, 20);
        setTimeout(() => resolve('too late'), 500);
      });
    case 'rejectLater':
      return new Promise((resolve) => {
        setTimeout(() => { Promise.reject(new Error('unhandled rejection in a timer')); }, 20);
        setTimeout(() => resolve('too late'), 500);
      });
    case 'log': {
      console.log('start ' + event.id);
      console.error('problem ' + event.id);
      await new Promise((r) => setTimeout(r, event.delay));
      console.log('end ' + event.id);
      process.stdout.write('raw ' + event.id + '\\nsecond ' + event.id + '\\n');
      return event.id;
    }
    case 'spam':
      for (let i = 0; i < 200; i++) console.log('line ' + i + ' ' + 'x'.repeat(20));
      return 'spammed';
    case 'bigint': return { n: 10n };
    case 'remaining': return { remaining: context.getRemainingTimeInMillis(), deadline: context.deadline };
    case 'sync': return 'sync ' + event.v;
    default: return 'unknown op';
  }
};
`;

describe('bootstrap with a CommonJS handler', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await startRuntime({ 'index.js': CJS }, { KILN_HANDLER: 'index.handler', KILN_MAX_LOG_BYTES: '1000' });
  });

  it('returns the handler result and passes event and context through', async () => {
    const r = await run(rt, { op: 'echo', n: [1, 2, { x: 'é' }] }, 'act-1');
    expect(r.ok).toBe(true);
    expect(r.result).toEqual({ event: { op: 'echo', n: [1, 2, { x: 'é' }] }, activationId: 'act-1' });
    expect(r.logs).toEqual([]);
  });

  it('turns an undefined result into null', async () => {
    const r = await run(rt, { op: 'undefined' });
    expect(r).toMatchObject({ ok: true, result: null });
    expect('result' in r).toBe(true);
  });

  it('reports a thrown error with its message and stack', async () => {
    const r = await run(rt, { op: 'throw', why: 'bad input' });
    expect(r.ok).toBe(false);
    expect(r.error!.message).toBe('boom: bad input');
    expect(r.error!.stack).toContain('TypeError: boom: bad input');
    expect(r.error!.stack).toContain('index.js');
    expect(r.result).toBeUndefined();
  });

  it('reports a thrown non-Error value', async () => {
    const r = await run(rt, { op: 'throwString' });
    expect(r.ok).toBe(false);
    expect(r.error!.message).toBe('just a string');
  });

  it('attributes an error thrown later from a timer to the call, and keeps serving', async () => {
    const r = await run(rt, { op: 'later' });
    expect(r.ok).toBe(false);
    expect(r.error!.message).toBe('thrown from a timer');
    expect(r.error!.stack).toContain('RangeError');
    expect(rt.child.exitCode).toBeNull();
    const next = await run(rt, { op: 'sync', v: 2 });
    expect(next).toMatchObject({ ok: true, result: 'sync 2' });
  });

  it('attributes an unhandled rejection from a timer to the call, and keeps serving', async () => {
    const r = await run(rt, { op: 'rejectLater' });
    expect(r.ok).toBe(false);
    expect(r.error!.message).toBe('unhandled rejection in a timer');
    const next = await run(rt, { op: 'sync', v: 3 });
    expect(next).toMatchObject({ ok: true, result: 'sync 3' });
  });

  it('captures stdout and stderr lines per call, in order, with stream markers', async () => {
    const r = await run(rt, { op: 'log', id: 'solo', delay: 1 });
    expect(r.ok).toBe(true);
    expect(r.logs!.map(text)).toEqual([
      'stdout: start solo', 'stderr: problem solo', 'stdout: end solo', 'stdout: raw solo', 'stdout: second solo',
    ]);
    for (const line of r.logs!) expect(line).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr): /);
  });

  it('does not mix the logs of two concurrent calls', async () => {
    const [slow, fast] = await Promise.all([
      run(rt, { op: 'log', id: 'slow', delay: 150 }, 'a-slow'),
      run(rt, { op: 'log', id: 'fast', delay: 20 }, 'a-fast'),
    ]);
    expect(slow).toMatchObject({ ok: true, result: 'slow' });
    expect(fast).toMatchObject({ ok: true, result: 'fast' });
    const expected = (id: string) => [`stdout: start ${id}`, `stderr: problem ${id}`, `stdout: end ${id}`, `stdout: raw ${id}`, `stdout: second ${id}`];
    expect(slow.logs!.map(text)).toEqual(expected('slow'));
    expect(fast.logs!.map(text)).toEqual(expected('fast'));
  });

  it('keeps call output off the runtime process stdout and stderr', async () => {
    await run(rt, { op: 'log', id: 'private', delay: 1 });
    expect(rt.stdout()).not.toContain('private');
    expect(rt.stderr()).not.toContain('private');
  });

  it('truncates logs beyond the size limit with a marker line', async () => {
    const r = await run(rt, { op: 'spam' });
    expect(r).toMatchObject({ ok: true, result: 'spammed' });
    const lines = r.logs!.map(text);
    expect(lines.length).toBeLessThan(200);
    expect(lines.length).toBeGreaterThan(5);
    const last = lines[lines.length - 1];
    expect(last).toMatch(/^stderr: .*log limit/);
    expect(last).toContain('1000');
    const kept = lines.slice(0, -1);
    expect(kept[0]).toBe(`stdout: line 0 ${'x'.repeat(20)}`);
    expect(kept.join('').length).toBeLessThanOrEqual(1000 + 20 * kept.length);
    expect(lines.filter((l) => /log limit/.test(l))).toHaveLength(1);
    // The limit is per call: the next call logs again.
    const next = await run(rt, { op: 'log', id: 'after', delay: 1 });
    expect(next.logs!.map(text)).toContain('stdout: end after');
  });

  it('refuses a result that is not JSON-serialisable', async () => {
    const r = await run(rt, { op: 'bigint' });
    expect(r.ok).toBe(false);
    expect(r.error!.message).toMatch(/BigInt|serial/i);
    const next = await run(rt, { op: 'sync', v: 4 });
    expect(next).toMatchObject({ ok: true, result: 'sync 4' });
  });

  it('gives the handler context.getRemainingTimeInMillis()', async () => {
    // A deadline far enough away that a slow round trip on a loaded machine cannot eat half of it.
    const r = await run(rt, { op: 'remaining' }, 'a', 60_000);
    expect(r.ok).toBe(true);
    const { remaining, deadline } = r.result as { remaining: number; deadline: number };
    expect(typeof remaining).toBe('number');
    expect(remaining).toBeGreaterThan(30_000);
    expect(remaining).toBeLessThanOrEqual(60_000);
    expect(typeof deadline).toBe('number');
  });

  it('answers 400 to a request body that is not JSON, and keeps serving', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ socketPath: rt.socket, path: '/run', method: 'POST' }, (res) => { res.resume(); resolve(res.statusCode!); });
      req.on('error', reject);
      req.end('{not json');
    });
    expect(status).toBe(400);
    expect(await run(rt, { op: 'sync', v: 5 })).toMatchObject({ ok: true, result: 'sync 5' });
  });
});

describe('bootstrap with other module shapes', () => {
  afterEach(stopAll);

  it('loads an ES module handler (index.handler resolves index.mjs)', async () => {
    const rt = await startRuntime(
      { 'index.mjs': 'import { hostname } from "node:os";\nexport const handler = async (event) => ({ esm: true, got: event.x, h: typeof hostname() });\n' },
      { KILN_HANDLER: 'index.handler' },
    );
    const r = await run(rt, { x: 42 });
    expect(r).toMatchObject({ ok: true, result: { esm: true, got: 42, h: 'string' } });
  });

  it('loads a handler in a sub-folder, with a CommonJS module.exports object', async () => {
    const rt = await startRuntime(
      { 'src/app.js': 'function make() { return { main: (e) => "sub " + e.v }; }\nmodule.exports = make();\n' },
      { KILN_HANDLER: 'src/app.main' },
    );
    expect(await run(rt, { v: 'x' })).toMatchObject({ ok: true, result: 'sub x' });
  });

  it('reports a missing handler module clearly on each call', async () => {
    const rt = await startRuntime({ 'index.js': CJS }, { KILN_HANDLER: 'missing.handler' });
    for (let i = 0; i < 2; i++) {
      const r = await run(rt, {});
      expect(r.ok).toBe(false);
      expect(r.error!.message).toMatch(/not found/);
      expect(r.error!.message).toContain('missing');
    }
    expect(rt.child.exitCode).toBeNull();
  });

  it('reports an export that is not a function', async () => {
    const rt = await startRuntime({ 'index.js': 'exports.handler = 42;\n' }, { KILN_HANDLER: 'index.handler' });
    const r = await run(rt, {});
    expect(r.ok).toBe(false);
    expect(r.error!.message).toContain('handler');
  });

  it('is specialised by POST /init {handler, env} when started without KILN_HANDLER', async () => {
    const rt = await startRuntime({ 'index.js': 'exports.greet = async (e, ctx) => process.env.GREETING + " " + e.name + " " + ctx.activationId;\n' });
    const before = await run(rt, { name: 'x' });
    expect(before.ok).toBe(false);
    expect(before.error!.message).toMatch(/not initiali[sz]ed/);

    const init = await post<{ ok: boolean }>(rt, '/init', { handler: 'index.greet', env: { GREETING: 'hello' } });
    expect(init.status).toBe(200);
    expect(init.body.ok).toBe(true);

    const r = await run(rt, { name: 'kiln' }, 'act-9');
    expect(r).toMatchObject({ ok: true, result: 'hello kiln act-9' });
  });

  it('runs its own no-op handler on POST /warm and stays unspecialised', async () => {
    const rt = await startRuntime({ 'index.js': 'exports.handler = async () => "mine";\n' });
    const warm = await post(rt, '/warm', { event: { x: 1 }, context: { activationId: 'warm-up', deadline: Date.now() + 1000 } });
    expect(warm.status).toBe(200);
    expect(warm.body).toMatchObject({ ok: true, result: { x: 1 } });
    expect((await run(rt, {})).error!.message).toMatch(/not initiali[sz]ed/);
    expect((await post<{ ok: boolean }>(rt, '/init', { handler: 'index.handler' })).body.ok).toBe(true);
    expect(await run(rt, {})).toMatchObject({ ok: true, result: 'mine' });
  });

  it('sends the response headers of /run before the handler finishes: the invoker\'s sign that the event arrived', async () => {
    const gate = path.join(os.tmpdir(), `kiln-boot-gate-${process.pid}-${Date.now()}`);
    // The handler finishes only once the gate file exists, which the test makes after the headers came.
    const rt = await startRuntime({ 'index.js': `const fs = require('fs');\nexports.handler = () => new Promise((r) => { const t = setInterval(() => { if (fs.existsSync(${JSON.stringify(gate)})) { clearInterval(t); r('through'); } }, 5); });\n` }, { KILN_HANDLER: 'index.handler' });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const payload = JSON.stringify({ event: {}, context: { activationId: 'g', deadline: Date.now() + 5000 } });
        const req = http.request({ socketPath: rt.socket, path: '/run', method: 'POST', headers: { 'content-length': Buffer.byteLength(payload) } }, (res) => {
          expect(res.statusCode).toBe(200);
          fs.writeFileSync(gate, ''); // headers are here while the handler still waits
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve(text));
        });
        req.on('error', reject);
        req.end(payload);
      });
      expect(JSON.parse(body)).toMatchObject({ ok: true, result: 'through' });
    } finally {
      fs.rmSync(gate, { force: true });
    }
  });

  it('answers 404 to an unknown route', async () => {
    const rt = await startRuntime({ 'index.js': CJS }, { KILN_HANDLER: 'index.handler' });
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ socketPath: rt.socket, path: '/nope', method: 'POST' }, (res) => { res.resume(); resolve(res.statusCode!); });
      req.on('error', reject);
      req.end('{}');
    });
    expect(status).toBe(404);
  });
});
