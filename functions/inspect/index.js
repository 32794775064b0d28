// Diagnostics for the isolation tests: what the function can see from inside its container,
// read with Node built-ins only (no shell, no child processes).
const fs = require('node:fs');
const os = require('node:os');

const read = (p) => { try { return fs.readFileSync(p, 'utf8'); } catch { return null; } };

function procNetDev() {
  const text = read('/proc/net/dev');
  if (text === null) return [];
  return text.split('\n').slice(2).map((l) => l.split(':')[0].trim()).filter(Boolean);
}

function memoryLimit() {
  const v1 = read('/sys/fs/cgroup/memory/memory.limit_in_bytes');
  if (v1 !== null) return v1.trim();
  const v2 = read('/sys/fs/cgroup/memory.max');
  return v2 === null ? null : v2.trim();
}

function tryWrite(p, readBack) {
  try {
    fs.writeFileSync(p, 'kiln');
    if (readBack && fs.readFileSync(p, 'utf8') !== 'kiln') return { ok: false, error: 'read back differs' };
    return { ok: true, error: null };
  } catch (e) {
    return { ok: false, error: e.code || String(e.message) };
  }
}

exports.handler = async () => {
  let pids = [];
  try { pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).sort((a, b) => a - b); } catch {}
  const root = tryWrite('/rootfile', false);
  const tmp = tryWrite('/tmp/x', true);
  return {
    hostname: os.hostname(),
    pids,
    // union of what Node reports (interfaces with an address) and every device in /proc/net/dev
    interfaces: [...new Set([...Object.keys(os.networkInterfaces()), ...procNetDev()])].sort(),
    memoryLimit: memoryLimit(),
    uid: process.getuid(),
    rootWritable: root.ok,
    rootWriteError: root.error,
    tmpWritable: tmp.ok,
    tmpWriteError: tmp.error,
    cwd: process.cwd(),
    env: Object.keys(process.env).sort(),
  };
};
