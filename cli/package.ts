// Packs a function directory into the gzipped tarball the gateway stores as the code layer.
// The same directory always gives the same bytes (sorted entries, fixed mtime, no owner names),
// so the digest only changes when the code does.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar';
import { Manifest, checkManifest } from '../common/types';

export class PackageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PackageError';
  }
}

const SKIP = new Set(['.git']);

/** Reads and validates DIR/kiln.json; throws a PackageError saying what is wrong. */
export async function readManifest(dir: string): Promise<Manifest> {
  const file = path.join(dir, 'kiln.json');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      const isDir = await fs.stat(dir).then((st) => st.isDirectory(), () => false);
      if (!isDir) throw new PackageError(`${dir} is not a directory`);
      throw new PackageError(`${file} not found: a function directory needs a kiln.json`);
    }
    throw new PackageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new PackageError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const manifest = checkManifest(raw);
  if (typeof manifest === 'string') throw new PackageError(`${file} is invalid: ${manifest}`);
  return manifest;
}

/** Every file, directory and symlink under dir (relative, '/'-separated), sorted; .git skipped. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await fs.readdir(path.join(dir, rel), { withFileTypes: true });
    for (const e of entries) {
      if (SKIP.has(e.name)) continue;
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out.push(p);
        await walk(p);
      } else if (e.isFile() || e.isSymbolicLink()) {
        out.push(p); // symlinks are stored as links, never followed
      }
    }
  };
  await walk('');
  // Code-unit order, not localeCompare: the result must not depend on the machine's locale.
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The .tar.gz of a function directory (kiln.json at the root, node_modules/ included). */
export async function packDirectory(dir: string): Promise<Buffer> {
  await readManifest(dir);
  const files = await listFiles(dir);
  const stream = tar.c({ gzip: true, portable: true, cwd: dir, mtime: new Date(0), noDirRecurse: true }, files);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}
