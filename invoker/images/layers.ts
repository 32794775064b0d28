// Content-addressed layer store. A layer is a tarball named by the sha256 of its bytes; it is
// stored once under blobs/ and unpacked once into <hex>/root, which every container of every
// function stacks read-only through overlayfs (one copy on disk and in the page cache).
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';

export const hexOf = (digest: string) => digest.replace(/^sha256:/, '');

const SAFE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link']);

export class LayerStore {
  private unpacking = new Map<string, Promise<string>>();

  constructor(readonly dir: string) {}

  blobPath(digest: string): string {
    return path.join(this.dir, 'blobs', hexOf(digest));
  }

  /** The unpacked root of a layer (the folder overlayfs stacks). */
  rootPath(digest: string): string {
    return path.join(this.dir, hexOf(digest), 'root');
  }

  /** Whether the layer is unpacked here. (The invoker remembers the answer per digest.) */
  has(digest: string): Promise<boolean> {
    return exists(this.rootPath(digest));
  }

  /** Stores a tarball file (moved in) and returns its digest. */
  async addFile(file: string): Promise<string> {
    const hash = createHash('sha256');
    await pipeline(fs.createReadStream(file), hash);
    const digest = `sha256:${hash.digest('hex')}`;
    await fsp.mkdir(path.join(this.dir, 'blobs'), { recursive: true });
    await fsp.rename(file, this.blobPath(digest));
    return digest;
  }

  /** Stores tarball bytes whose digest the caller already knows, after checking it. */
  async addBuffer(digest: string, bytes: Buffer): Promise<void> {
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (actual !== digest) throw new Error(`layer digest mismatch: expected ${digest}, got ${actual}`);
    await fsp.mkdir(path.join(this.dir, 'blobs'), { recursive: true });
    const tmp = `${this.blobPath(digest)}.${randomBytes(4).toString('hex')}.tmp`;
    await fsp.writeFile(tmp, bytes);
    await fsp.rename(tmp, this.blobPath(digest));
  }

  /**
   * Unpacks a stored layer once (concurrent callers share the work) into its root, under
   * `prefix` inside it. Unpacking goes to a temporary folder renamed into place, so a crash
   * never leaves a half-unpacked layer that looks complete.
   */
  unpack(digest: string, prefix = ''): Promise<string> {
    const hex = hexOf(digest);
    let p = this.unpacking.get(hex);
    if (!p) {
      p = this.doUnpack(digest, prefix).finally(() => this.unpacking.delete(hex));
      this.unpacking.set(hex, p);
    }
    return p;
  }

  private async doUnpack(digest: string, prefix: string): Promise<string> {
    const root = this.rootPath(digest);
    if (await exists(root)) return root;
    const tmp = path.join(this.dir, `${hexOf(digest)}.${randomBytes(4).toString('hex')}.tmp`);
    const target = path.join(tmp, 'root', prefix);
    await fsp.mkdir(target, { recursive: true });
    try {
      await tar.x({
        file: this.blobPath(digest),
        cwd: target,
        strict: true,
        preservePaths: false,
        // Packages were checked at deploy; refuse anything but plain entries all the same.
        filter: (_p, entry) => SAFE_TYPES.has((entry as tar.ReadEntry).type),
      });
      await makeReadable(path.join(tmp, 'root'));
      // rename fails if another process unpacked the same layer first: theirs is as good.
      await fsp.rename(tmp, path.dirname(root)).catch(() => undefined);
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
    return root;
  }
}

/**
 * Containers run as an unprivileged host uid, to which files owned by host root are "other":
 * every file must be readable by all (a+rX), or a package's 0600 file could not be loaded.
 */
async function makeReadable(dir: string): Promise<void> {
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isSymbolicLink()) continue;
    const mode = (await fsp.stat(p)).mode & 0o7777;
    if (e.isDirectory()) {
      await fsp.chmod(p, mode | 0o555);
      await makeReadable(p);
    } else {
      await fsp.chmod(p, (mode | 0o444 | (mode & 0o100 ? 0o111 : 0)) & ~0o6000); // and no setuid/setgid
    }
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p);
    return true;
  } catch {
    return false;
  }
}
