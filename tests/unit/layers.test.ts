// invoker/images: the shared base and node runtime layers are built deterministically from the
// host, stored under the sha256 of their bytes, unpacked once, and kept when nothing changed.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tar from 'tar';
import { ensureRuntimeLayers, indexPath, readRuntimeLayers, RuntimeLayers, sharedLibraries } from '../../invoker/images/build';
import { hexOf, LayerStore } from '../../invoker/images/layers';

jest.setTimeout(120_000);

const REPO_BOOTSTRAP = path.resolve(__dirname, '..', '..', 'runtimes', 'node', 'bootstrap.js');
const sha256File = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const mtimeOf = (f: string) => fs.statSync(f).mtimeMs;

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-layers-test-'));
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('ensureRuntimeLayers', () => {
  let storeA: LayerStore;
  let storeB: LayerStore;
  let a: RuntimeLayers;
  let b: RuntimeLayers;

  beforeAll(async () => {
    storeA = new LayerStore(path.join(root, 'a'));
    storeB = new LayerStore(path.join(root, 'b'));
    a = await ensureRuntimeLayers(storeA, process.execPath, true);
    // A different umask must not change a single byte of the layers.
    const old = process.umask(0o077);
    try {
      b = await ensureRuntimeLayers(storeB, process.execPath, true);
    } finally {
      process.umask(old);
    }
  });

  it('gives sha256 digests for the base and the node20 runtime', () => {
    expect(a.base).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(a.runtimes.node20).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(a.base).not.toBe(a.runtimes.node20);
  });

  it('is deterministic: two builds give identical digests', async () => {
    expect(b.base).toBe(a.base);
    expect(b.runtimes.node20).toBe(a.runtimes.node20);
    expect(b.fingerprint).toBe(a.fingerprint);
    // and a forced rebuild into the same store too
    const again = await ensureRuntimeLayers(storeA, process.execPath, true);
    expect(again.base).toBe(a.base);
    expect(again.runtimes.node20).toBe(a.runtimes.node20);
  });

  it('names each blob by the sha256 of its bytes', () => {
    for (const digest of [a.base, a.runtimes.node20]) {
      const blob = storeA.blobPath(digest);
      expect(path.basename(blob)).toBe(hexOf(digest));
      expect(sha256File(blob)).toBe(hexOf(digest));
    }
  });

  it('records the digests in the store index', async () => {
    expect(await readRuntimeLayers(storeA)).toEqual(a);
  });

  it('unpacks the base layer with busybox, its applets and the host libraries node needs', async () => {
    const base = storeA.rootPath(a.base);
    expect(await storeA.has(a.base)).toBe(true);
    const busybox = path.join(base, 'bin', 'busybox');
    expect(fs.statSync(busybox).isFile()).toBe(true);
    expect(fs.statSync(busybox).mode & 0o111).not.toBe(0);
    expect(fs.readlinkSync(path.join(base, 'bin', 'sh'))).toBe('busybox');

    const libs = await sharedLibraries(process.execPath);
    expect(libs.some((l) => /\/libc\.so/.test(l))).toBe(true);
    for (const lib of libs) {
      const inImage = path.join(base, lib);
      expect(fs.existsSync(inImage)).toBe(true);
      expect(fs.statSync(inImage).size).toBe(fs.statSync(fs.realpathSync(lib)).size);
    }
    // mount points of a read-only root
    for (const d of ['proc', 'sys', 'dev', 'tmp', 'function', 'run/kiln']) {
      expect(fs.statSync(path.join(base, d)).isDirectory()).toBe(true);
    }
  });

  it('unpacks the node20 layer with the host node binary and the repository bootstrap', () => {
    const rt = storeA.rootPath(a.runtimes.node20);
    const node = path.join(rt, 'usr', 'bin', 'node');
    expect(fs.statSync(node).size).toBe(fs.statSync(process.execPath).size);
    expect(fs.statSync(node).mode & 0o111).not.toBe(0);
    expect(fs.readFileSync(path.join(rt, 'opt', 'kiln', 'bootstrap.js'), 'utf8')).toBe(fs.readFileSync(REPO_BOOTSTRAP, 'utf8'));
  });

  it('writes portable tar entries: epoch mtimes, no owners', async () => {
    const entries: { path: string; type: string; mtime?: Date; uname?: string }[] = [];
    await tar.t({ file: storeA.blobPath(a.runtimes.node20), onReadEntry: (e) => { entries.push({ path: e.path, type: e.type, mtime: e.mtime, uname: e.uname }); } });
    expect(entries.map((e) => e.path.replace(/\/$/, ''))).toEqual(expect.arrayContaining(['usr/bin/node', 'opt/kiln/bootstrap.js']));
    for (const e of entries) {
      // node-tar's portable mode writes no mtime at all for folders
      if (e.type === 'Directory') expect(e.mtime?.getTime() ?? 0).toBe(0);
      else expect(e.mtime?.getTime()).toBe(0);
      expect(e.uname ?? '').toBe('');
    }
  });

  it('keeps the layers on a second, non-forced call (no rebuild)', async () => {
    const files = [indexPath(storeA), storeA.blobPath(a.base), storeA.blobPath(a.runtimes.node20)];
    const before = files.map(mtimeOf);
    const listing = fs.readdirSync(storeA.dir).sort();
    await new Promise((r) => setTimeout(r, 20));
    const kept = await ensureRuntimeLayers(storeA, process.execPath);
    expect(kept).toEqual(a);
    expect(files.map(mtimeOf)).toEqual(before);
    expect(fs.readdirSync(storeA.dir).sort()).toEqual(listing);
  });

  it('leaves no temporary files in the store', () => {
    const names = fs.readdirSync(storeA.dir).sort();
    expect(names).toEqual(['blobs', hexOf(a.base), hexOf(a.runtimes.node20), 'runtimes.json'].sort());
    expect(fs.readdirSync(path.join(storeA.dir, 'blobs')).sort()).toEqual([hexOf(a.base), hexOf(a.runtimes.node20)].sort());
  });

  it('rebuilds when the index no longer matches, or a root is gone', async () => {
    const store = storeB;
    fs.writeFileSync(indexPath(store), JSON.stringify({ ...b, fingerprint: 'stale' }));
    const rebuilt = await ensureRuntimeLayers(store, process.execPath);
    expect(rebuilt).toEqual(b);
    expect((await readRuntimeLayers(store)).fingerprint).toBe(b.fingerprint);

    fs.rmSync(path.dirname(store.rootPath(b.runtimes.node20)), { recursive: true, force: true });
    expect(await store.has(b.runtimes.node20)).toBe(false);
    const again = await ensureRuntimeLayers(store, process.execPath);
    expect(again).toEqual(b);
    expect(await store.has(b.runtimes.node20)).toBe(true);
    expect(fs.existsSync(path.join(store.rootPath(b.runtimes.node20), 'usr', 'bin', 'node'))).toBe(true);
  });
});

describe('LayerStore', () => {
  let store: LayerStore;
  let tarball: Buffer;
  let digest: string;

  beforeAll(async () => {
    store = new LayerStore(path.join(root, 'store'));
    const src = fs.mkdtempSync(path.join(root, 'src-'));
    fs.mkdirSync(path.join(src, 'dir'));
    fs.writeFileSync(path.join(src, 'dir', 'hello.txt'), 'hello layer\n');
    const out = path.join(root, 'one.tar');
    await tar.c({ file: out, cwd: src, portable: true }, ['dir']);
    tarball = fs.readFileSync(out);
    digest = `sha256:${createHash('sha256').update(tarball).digest('hex')}`;
  });

  it('refuses bytes that do not match the given digest, storing nothing', async () => {
    const wrong = `sha256:${'0'.repeat(64)}`;
    await expect(store.addBuffer(wrong, tarball)).rejects.toThrow(/mismatch/);
    expect(fs.existsSync(store.blobPath(wrong))).toBe(false);
    const tampered = Buffer.from(tarball);
    tampered[600] ^= 1;
    await expect(store.addBuffer(digest, tampered)).rejects.toThrow(/mismatch/);
    expect(fs.existsSync(store.blobPath(digest))).toBe(false);
  });

  it('stores matching bytes under their digest and unpacks them once', async () => {
    await store.addBuffer(digest, tarball);
    expect(fs.readFileSync(store.blobPath(digest)).equals(tarball)).toBe(true);
    expect(await store.has(digest)).toBe(false);
    const [r1, r2] = await Promise.all([store.unpack(digest), store.unpack(digest)]);
    expect(r1).toBe(store.rootPath(digest));
    expect(r2).toBe(r1);
    expect(fs.readFileSync(path.join(r1, 'dir', 'hello.txt'), 'utf8')).toBe('hello layer\n');
    expect(await store.has(digest)).toBe(true);
    expect(fs.readdirSync(store.dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('addFile moves a tarball in and returns its sha256 digest', async () => {
    const f = path.join(root, 'copy.tar');
    fs.writeFileSync(f, tarball);
    expect(await store.addFile(f)).toBe(digest);
    expect(fs.existsSync(f)).toBe(false);
  });
});
