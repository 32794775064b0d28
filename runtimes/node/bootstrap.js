// kiln's in-container runtime for Node.js. It runs as the container's first process, listens
// on a unix socket that the invoker bind-mounts from the host, and runs one handler call per
// POST /run. Output written during a call is captured for that call only (AsyncLocalStorage),
// size-limited, and returned with the reply; nothing of it reaches the container's own stdout.
// POST /init {handler, env} specialises a generic (prewarmed) container; KILN_HANDLER in the
// environment does the same at start.
'use strict';
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { AsyncLocalStorage } = require('node:async_hooks');

const SOCKET = process.env.KILN_SOCKET || '/run/kiln/kiln.sock';
const FUNCTION_DIR = process.env.KILN_FUNCTION_DIR || '/function';
const MAX_LOG_BYTES = Number(process.env.KILN_MAX_LOG_BYTES) || 64 * 1024;
const calls = new AsyncLocalStorage();
let handler = null; // Promise of the handler function, once specialised

function loadHandler(spec, dir = FUNCTION_DIR) {
  const dot = spec.lastIndexOf('.');
  const file = path.join(dir, spec.slice(0, dot));
  const name = spec.slice(dot + 1);
  const found = ['', '.js', '.cjs', '.mjs'].map((ext) => file + ext).find((f) => isFile(f));
  if (!found) return Promise.reject(new Error(`handler module not found: ${spec.slice(0, dot)}`));
  const pick = (mod) => {
    const fn = mod[name] ?? (mod.default && mod.default[name]);
    if (typeof fn !== 'function') throw new Error(`${spec}: export '${name}' is not a function`);
    return fn;
  };
  // require() for CommonJS (exports.handler) is much faster than import(); ES modules
  // (export const handler, .mjs or "type": "module") go through import().
  if (!found.endsWith('.mjs')) {
    try {
      return Promise.resolve(pick(require(found)));
    } catch (err) {
      if (!err || err.code !== 'ERR_REQUIRE_ESM') return Promise.reject(err);
    }
  }
  return import(pathToFileURL(found).href).then(pick);
}

function isFile(f) {
  try { return fs.statSync(f).isFile(); } catch { return false; }
}

function specialise(spec, env) {
  Object.assign(process.env, env || {});
  handler = loadHandler(spec);
  handler.catch(() => {}); // reported on each call instead
}

// Route writes made during a call into that call's log; others pass through.
for (const [stream, name] of [[process.stdout, 'stdout'], [process.stderr, 'stderr']]) {
  const write = stream.write.bind(stream);
  stream.write = (chunk, encoding, cb) => {
    const call = calls.getStore();
    if (!call) return write(chunk, encoding, cb);
    capture(call, name, typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    if (typeof encoding === 'function') encoding();
    else if (typeof cb === 'function') cb();
    return true;
  };
}

function capture(call, stream, text) {
  if (call.truncated) return;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    call.bytes += Buffer.byteLength(line);
    if (call.bytes > MAX_LOG_BYTES) {
      call.truncated = true;
      call.logs.push(`${new Date().toISOString()} stderr: [kiln] log limit of ${MAX_LOG_BYTES} bytes reached; the rest was dropped`);
      return;
    }
    call.logs.push(`${new Date().toISOString()} ${stream}: ${line}`);
  }
}

// An error thrown from a timer or callback belongs to the call that scheduled it.
process.on('uncaughtException', (err) => {
  const call = calls.getStore();
  if (call) call.fail(err);
  else process.stderr.write(`[kiln] uncaught exception outside a call: ${err && err.stack}\n`);
});
process.on('unhandledRejection', (err) => {
  const call = calls.getStore();
  if (call) call.fail(err instanceof Error ? err : new Error(String(err)));
});

function errorOf(err) {
  const e = err instanceof Error ? err : new Error(String(err));
  return { message: e.message, stack: e.stack, errno: typeof e.code === 'string' ? e.code : undefined };
}

async function runCall(event, context, loaded) {
  const call = { logs: [], bytes: 0, truncated: false, fail: null };
  const failed = new Promise((_, reject) => { call.fail = reject; });
  return calls.run(call, async () => {
    const ctx = { ...context, getRemainingTimeInMillis: () => context.deadline - Date.now() };
    try {
      if (!loaded) throw new Error('container not initialised with a handler');
      const fn = await loaded;
      const result = await Promise.race([Promise.resolve().then(() => fn(event, ctx)), failed]);
      const json = JSON.stringify(result === undefined ? null : result);
      if (json === undefined) throw new Error('the result is not JSON-serialisable');
      return `{"ok":true,"result":${json},"logs":${JSON.stringify(call.logs)}}`;
    } catch (err) {
      return JSON.stringify({ ok: false, error: errorOf(err), logs: call.logs });
    }
  });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

const server = http.createServer(async (req, res) => {
  try {
    const body = JSON.parse(await readBody(req));
    if (req.url === '/run' || req.url === '/warm') {
      // Headers go out before the handler runs: they tell the invoker the event arrived, so a
      // connection that breaks before them is safe to retry elsewhere and one after is not.
      res.writeHead(200, { 'content-type': 'application/json' }).flushHeaders();
      // /warm: a stem cell runs one call of kiln's own no-op module before it is frozen, so the
      // module loader and this path are compiled before its first real call.
      const loaded = req.url === '/run' ? handler : loadHandler('warm-up.handler', __dirname);
      res.end(await runCall(body.event, body.context, loaded));
      return;
    }
    let reply;
    if (req.url === '/init') {
      specialise(body.handler, body.env);
      await handler.catch(() => {});
      reply = '{"ok":true}';
    } else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(reply);
  } catch (err) {
    res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: false, error: errorOf(err) }));
  }
});
server.keepAliveTimeout = 0; // the invoker decides when a connection ends

if (process.env.KILN_HANDLER) specialise(process.env.KILN_HANDLER, {});
// Set up the ES module loader now, while nothing waits: its first use costs tens of ms.
else import('node:os').catch(() => undefined);
try { fs.unlinkSync(SOCKET); } catch { /* none left */ }
server.listen(SOCKET);
