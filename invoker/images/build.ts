// Builds the shared image layers from what the host already has: the base layer (busybox and
// the C runtime libraries node links against) and one layer per language runtime (the node
// binary plus kiln's bootstrap). Tarballs are made deterministic (sorted entries, fixed mtime
// and modes, no owners) so the same inputs always give the same digests.
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tar from 'tar';
import { run } from '../../common/process';
import { LayerStore } from './layers';
import { REPO_ROOT } from '../../common/paths';

export interface RuntimeLayers {
  base: string;
  runtimes: Record<string, string>; // runtime name -> layer digest
  fingerprint: string;
}

const BOOTSTRAP = path.join(REPO_ROOT, 'runtimes', 'node', 'bootstrap.js');
const WARM_UP = path.join(REPO_ROOT, 'runtimes', 'node', 'warm-up.js');
// Mount points must exist in the image: the container root is read-only.
const BASE_DIRS = ['bin', 'dev', 'etc', 'function', 'opt/kiln', 'proc', 'run/kiln', 'sys', 'tmp', 'usr/bin'];

export async function findBusybox(): Promise<string> {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) if (await isFile(p)) return p;
  throw new Error('busybox not found (install the busybox-static package)');
}

/** The shared libraries a binary loads, as ldd names them (path inside the image = host path). */
export async function sharedLibraries(binary: string): Promise<string[]> {
  // A static binary makes ldd exit non-zero: it needs no libraries.
  const out = await run('ldd', [binary]).catch(() => '');
  const libs = new Set<string>();
  for (const line of out.split('\n')) {
    const m = line.match(/(?:=>\s*)?(\/\S+)\s+\(0x/);
    if (m) libs.add(m[1]);
  }
  return [...libs].sort();
}

async function isFile(p: string): Promise<boolean> {
  return fsp.stat(p).then((s) => s.isFile(), () => false);
}

/** Packs a staging folder deterministically and stores it; returns the digest. */
async function packLayer(store: LayerStore, staging: string): Promise<string> {
  const entries: string[] = [];
  const walk = async (rel: string) => {
    for (const d of (await fsp.readdir(path.join(staging, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      entries.push(r);
      if (d.isDirectory()) await walk(r);
    }
  };
  await walk('');
  const out = path.join(store.dir, `pack.${process.pid}.${Date.now()}.tar`);
  await fsp.mkdir(store.dir, { recursive: true });
  await tar.c({ file: out, cwd: staging, portable: true, mtime: new Date(0), noDirRecurse: true }, entries);
  return store.addFile(out);
}

async function put(staging: string, rel: string, from: string, mode: number): Promise<void> {
  const dest = path.join(staging, rel);
  await fsp.mkdir(path.dirname(dest), { recursive: true });
  await fsp.copyFile(from, dest);
  await fsp.chmod(dest, mode);
}

async function write(staging: string, rel: string, text: string): Promise<void> {
  const dest = path.join(staging, rel);
  await fsp.mkdir(path.dirname(dest), { recursive: true });
  await fsp.writeFile(dest, text, { mode: 0o644 });
  await fsp.chmod(dest, 0o644);
}

async function stage(fn: (dir: string) => Promise<void>): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-layer-'));
  try {
    await fn(dir);
    // Fixed modes for every folder, whatever the umask.
    const fix = async (d: string): Promise<void> => {
      await fsp.chmod(d, 0o755);
      for (const e of await fsp.readdir(d, { withFileTypes: true })) if (e.isDirectory()) await fix(path.join(d, e.name));
    };
    await fix(dir);
    return dir;
  } catch (e) {
    await fsp.rm(dir, { recursive: true, force: true });
    throw e;
  }
}

export async function buildBaseLayer(store: LayerStore, nodeBinary: string): Promise<string> {
  const busybox = await findBusybox();
  const applets = (await run(busybox, ['--list'])).split('\n').filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox');
  const libs = [...new Set([...(await sharedLibraries(nodeBinary)), ...(await sharedLibraries(busybox))])].sort();
  const dir = await stage(async (s) => {
    for (const d of BASE_DIRS) await fsp.mkdir(path.join(s, d), { recursive: true });
    await put(s, 'bin/busybox', busybox, 0o755);
    for (const a of applets.sort()) if (a !== 'busybox') await fsp.symlink('busybox', path.join(s, 'bin', a)).catch(() => undefined);
    for (const lib of libs) await put(s, lib.slice(1), await fsp.realpath(lib), 0o755);
    await write(s, 'etc/passwd', 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
    await write(s, 'etc/group', 'root:x:0:\nnogroup:x:65534:\n');
    await write(s, 'etc/hosts', '127.0.0.1 localhost\n::1 localhost\n');
  });
  try {
    return await packLayer(store, dir);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

export async function buildNodeLayer(store: LayerStore, nodeBinary: string): Promise<string> {
  const dir = await stage(async (s) => {
    await put(s, 'usr/bin/node', nodeBinary, 0o755);
    await put(s, 'opt/kiln/bootstrap.js', BOOTSTRAP, 0o644);
    await put(s, 'opt/kiln/warm-up.js', WARM_UP, 0o644);
  });
  try {
    return await packLayer(store, dir);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** What the layers are built from: when none of it changed, the built layers are kept. */
async function fingerprint(nodeBinary: string): Promise<string> {
  const h = createHash('sha256');
  for (const f of [nodeBinary, await findBusybox(), BOOTSTRAP, __filename, ...(await sharedLibraries(nodeBinary))]) {
    const st = await fsp.stat(await fsp.realpath(f));
    h.update(`${f}:${st.size}:${st.mtimeMs}\n`);
  }
  return h.digest('hex');
}

export function indexPath(store: LayerStore): string {
  return path.join(store.dir, 'runtimes.json');
}

export async function readRuntimeLayers(store: LayerStore): Promise<RuntimeLayers> {
  try {
    return JSON.parse(await fsp.readFile(indexPath(store), 'utf8')) as RuntimeLayers;
  } catch {
    throw new Error(`no runtime layers in ${store.dir}: run scripts/setup.sh (npm start does) first`);
  }
}

/** Builds (or keeps) the base and runtime layers, unpacks them, and records their digests. */
export async function ensureRuntimeLayers(store: LayerStore, nodeBinary = process.execPath, force = false): Promise<RuntimeLayers> {
  const fp = await fingerprint(nodeBinary);
  if (!force) {
    const known = await readRuntimeLayers(store).catch(() => null);
    if (known && known.fingerprint === fp && (await store.has(known.base)) && (await store.has(known.runtimes.node20))) return known;
  }
  const base = await buildBaseLayer(store, nodeBinary);
  const node20 = await buildNodeLayer(store, nodeBinary);
  await store.unpack(base);
  await store.unpack(node20);
  const layers: RuntimeLayers = { base, runtimes: { node20 }, fingerprint: fp };
  await fsp.writeFile(indexPath(store), JSON.stringify(layers, null, 2) + '\n');
  return layers;
}
