// Validation of an uploaded function package (a gzipped tar), entirely in memory: nothing is
// written to disk. The package is streamed through gunzip and node-tar's parser so that a
// decompression bomb is refused as soon as it crosses a limit, without buffering it first.
//
// Refused (KilnError 'bad_request', message naming the entry):
//  - anything that is not a gzip-compressed tar (or is compressed twice);
//  - entry paths that are absolute or contain a `..` segment (raw header / pax / GNU long name,
//    checked before any normalisation), or that lead through a symlink of the package;
//  - symlinks whose target is absolute or, resolved from the link's directory (following the
//    package's other symlinks, as the kernel would), leaves the package root;
//  - hard links whose target leaves the root or is itself a symlink (link(2) would copy the
//    symlink to another directory, changing what it points at);
//  - entry types other than regular files, directories, symlinks and hard links;
//  - more than maxFiles entries or more than maxUnpackedBytes of content;
//  - a missing, duplicated, non-regular, oversized, malformed or invalid root kiln.json.
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as tar from 'tar';
import { KilnError } from '../common/errors';
import { type Manifest, checkManifest } from '../common/types';

export const DEFAULT_MAX_FILES = 10_000;
export const DEFAULT_MAX_UNPACKED_BYTES = 256 * 2 ** 20;
export const MAX_MANIFEST_BYTES = 64 * 2 ** 10;
export const MANIFEST_FILE = 'kiln.json';

export interface PackageLimits {
  maxFiles?: number;
  maxUnpackedBytes?: number;
}

export interface PackageInfo {
  manifest: Manifest;
  digest: string;
  files: number;
  unpackedBytes: number;
}

const ALLOWED_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link']);
const REGULAR_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
/** Symlink hops allowed while resolving one path (the kernel's MAXSYMLINKS is 40). */
const MAX_SYMLINK_HOPS = 40;
/** Tar framing per entry (header, padding, pax/long-name records) allowed on top of content. */
const FRAMING_BYTES_PER_ENTRY = 16 * 2 ** 10;
const FRAMING_BYTES_FIXED = 2 ** 20;
const INPUT_SLICE = 64 * 2 ** 10;

const bad = (message: string) => new KilnError('bad_request', message);
const show = (p: string) => JSON.stringify(p);

/** sha256 digest of the uploaded bytes, as the registry stores it. */
export function packageDigest(tgz: Buffer): string {
  return 'sha256:' + createHash('sha256').update(tgz).digest('hex');
}

/** Path segments with `.` and empty segments dropped; `./a//b/` → ['a', 'b']. */
function segmentsOf(p: string): string[] {
  return p.split('/').filter((s) => s !== '' && s !== '.');
}

/** Refuses absolute paths and `..` segments in a raw path from the archive. */
function checkRawPath(p: string, what: string): void {
  if (p.includes('\0')) throw bad(`${what} ${show(p)} contains a NUL byte`);
  if (p.startsWith('/') || p.startsWith('\\')) throw bad(`${what} ${show(p)} is an absolute path`);
  if (p.split(/[\\/]/).includes('..')) throw bad(`${what} ${show(p)} contains a '..' segment`);
}

/**
 * Resolves `rel` from directory `dir` (segments, itself free of symlinks) inside the package,
 * following the package's symlinks like the kernel does. Returns null when the path leaves the
 * package root at any point.
 */
function resolveInside(
  dir: string[],
  rel: string,
  links: Map<string, string>,
  budget: { hops: number },
  origin: string,
): string[] | null {
  if (rel.startsWith('/')) return null;
  const cur = [...dir];
  for (const seg of rel.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (cur.length === 0) return null;
      cur.pop();
      continue;
    }
    cur.push(seg);
    const target = links.get(cur.join('/'));
    if (target === undefined) continue;
    if (--budget.hops < 0) throw bad(`symlink ${show(origin)}: too many levels of symbolic links`);
    cur.pop();
    const resolved = resolveInside(cur, target, links, budget, origin);
    if (resolved === null) return null;
    cur.splice(0, cur.length, ...resolved);
  }
  return cur;
}

export async function inspectPackage(tgz: Buffer, limits: PackageLimits = {}): Promise<PackageInfo> {
  const maxFiles = limits.maxFiles ?? DEFAULT_MAX_FILES;
  const maxUnpackedBytes = limits.maxUnpackedBytes ?? DEFAULT_MAX_UNPACKED_BYTES;
  const maxStreamBytes = maxUnpackedBytes + FRAMING_BYTES_FIXED + FRAMING_BYTES_PER_ENTRY * (maxFiles + 1);

  if (!Buffer.isBuffer(tgz) || tgz.length < 2 || tgz[0] !== 0x1f || tgz[1] !== 0x8b) {
    throw bad('package is not a gzip-compressed tar archive (missing gzip magic bytes)');
  }
  const digest = packageDigest(tgz);

  let failure: KilnError | undefined;
  const fail = (e: unknown) => {
    if (failure) return;
    failure = e instanceof KilnError ? e : bad(`package is not a valid tar archive: ${(e as Error)?.message ?? e}`);
  };

  let files = 0;
  let unpackedBytes = 0;
  let manifestText: Buffer | undefined;
  let manifestSeen = false;
  /** normalised path → raw symlink target */
  const symlinks = new Map<string, string>();
  /** [normalised path, raw path] of every entry, for the through-a-symlink check */
  const entries: [string, string][] = [];
  /** [raw path, normalised target] of hard links */
  const hardlinks: [string, string][] = [];

  const onEntry = (entry: tar.ReadEntry) => {
    // Keep the parser moving whatever happens; kiln.json is read through its own 'data' listener.
    let keep = false;
    try {
      if (failure) return;
      const rawPath = entry.path;
      const type = entry.type as string;
      checkRawPath(entry.header.path ?? rawPath, 'entry');
      checkRawPath(rawPath, 'entry');

      if (++files > maxFiles) throw bad(`package has more than ${maxFiles} entries (at ${show(rawPath)})`);
      if (!ALLOWED_TYPES.has(type)) {
        throw bad(`entry ${show(rawPath)} has unsupported type ${type}: only files, directories and links are allowed`);
      }
      const size = Math.max(entry.size ?? 0, entry.header.size ?? 0);
      unpackedBytes += size;
      if (unpackedBytes > maxUnpackedBytes) {
        throw bad(`package unpacks to more than ${maxUnpackedBytes} bytes (limit reached at entry ${show(rawPath)})`);
      }

      const segs = segmentsOf(rawPath);
      const key = segs.join('/');
      if (key === '' && type !== 'Directory') throw bad(`entry ${show(rawPath)} replaces the package root`);
      entries.push([key, rawPath]);

      if (type === 'SymbolicLink' || type === 'Link') {
        const rawTarget = entry.linkpath ?? entry.header.linkpath ?? '';
        const headerTarget = entry.header.linkpath ?? rawTarget;
        const what = type === 'SymbolicLink' ? 'symlink' : 'hard link';
        for (const t of [headerTarget, rawTarget]) {
          if (t.includes('\0')) throw bad(`${what} ${show(rawPath)} has a target containing a NUL byte`);
          if (t.startsWith('/')) throw bad(`${what} ${show(rawPath)} points to absolute path ${show(t)}`);
        }
        if (type === 'SymbolicLink') {
          // Cheap lexical check now; the full check (through other symlinks) runs at the end.
          if (resolveInside(segs.slice(0, -1), rawTarget, new Map(), { hops: 0 }, rawPath) === null) {
            throw bad(`symlink ${show(rawPath)} -> ${show(rawTarget)} escapes the package root`);
          }
          symlinks.set(key, rawTarget);
        } else {
          // A hard link's target is an archive member name, relative to the package root.
          const resolved = resolveInside([], rawTarget, new Map(), { hops: 0 }, rawPath);
          if (resolved === null || resolved.length === 0) {
            throw bad(`hard link ${show(rawPath)} -> ${show(rawTarget)} escapes the package root`);
          }
          hardlinks.push([rawPath, rawTarget]);
        }
      }

      if (key === MANIFEST_FILE) {
        if (manifestSeen) throw bad(`${MANIFEST_FILE} appears more than once in the package`);
        manifestSeen = true;
        if (!REGULAR_TYPES.has(type)) throw bad(`${MANIFEST_FILE} must be a regular file, not a ${type}`);
        if (size > MAX_MANIFEST_BYTES) {
          throw bad(`${MANIFEST_FILE} is ${size} bytes, more than the ${MAX_MANIFEST_BYTES} allowed`);
        }
        const chunks: Buffer[] = [];
        entry.on('data', (c: Buffer) => chunks.push(c));
        entry.on('end', () => (manifestText = Buffer.concat(chunks)));
        keep = true;
      }
    } catch (e) {
      fail(e);
    } finally {
      if (!keep) entry.resume();
    }
  };

  const parser = new tar.Parser({ strict: true, zstd: false, brotli: false });
  parser.on('entry', onEntry);
  parser.on('ignoredEntry', (entry: tar.ReadEntry) => {
    const what = entry.meta ? `metadata record (${entry.type}) before ${show(entry.path)} is too large` :
      `entry ${show(entry.path)} has unsupported type ${entry.type}`;
    fail(bad(what));
  });
  parser.on('error', (e: Error) => fail(e));
  const parserDone = new Promise<void>((resolve) => {
    parser.once('end', resolve);
    parser.once('abort', resolve);
  });

  let streamed = 0;
  let head: Buffer | undefined = Buffer.alloc(0);
  // The start of the decompressed stream is looked at before node-tar sees it: node-tar would
  // silently decompress a second gzip layer, bypassing the byte accounting here.
  const flushHead = () => {
    const start = head!;
    head = undefined;
    if (start.length === 0) throw bad('package is empty: the gzip stream holds no tar data');
    if (start[0] === 0x1f && start[1] === 0x8b) throw bad('package is compressed twice (gzip inside gzip)');
    parser.write(start);
  };
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      try {
        streamed += chunk.length;
        if (streamed > maxStreamBytes) {
          throw bad(`package unpacks to more than ${maxStreamBytes} bytes of tar data (decompression limit)`);
        }
        if (head) {
          head = Buffer.concat([head, chunk]);
          if (head.length >= 512) flushHead();
        } else {
          parser.write(chunk);
        }
      } catch (e) {
        fail(e);
      }
      cb(failure);
    },
    final(cb) {
      try {
        if (head) flushHead();
        parser.end();
      } catch (e) {
        fail(e);
      }
      if (failure) return cb(failure);
      parserDone.then(() => cb(failure), cb);
    },
  });

  async function* slices() {
    for (let i = 0; i < tgz.length; i += INPUT_SLICE) yield tgz.subarray(i, i + INPUT_SLICE);
  }
  try {
    await pipeline(Readable.from(slices()), zlib.createGunzip(), sink);
  } catch (e) {
    if (failure) throw failure;
    if (e instanceof KilnError) throw e;
    throw bad(`package is not a valid gzip stream: ${(e as Error)?.message ?? e}`);
  }
  if (failure) throw failure;

  // Checks that need the whole archive.
  for (const [key, rawPath] of entries) {
    const segs = key.split('/');
    for (let i = 1; i < segs.length; i++) {
      const prefix = segs.slice(0, i).join('/');
      if (symlinks.has(prefix)) throw bad(`entry ${show(rawPath)} lies inside symlink ${show(prefix)}`);
    }
  }
  for (const [key, target] of symlinks) {
    const budget = { hops: MAX_SYMLINK_HOPS };
    if (resolveInside(key.split('/').slice(0, -1), target, symlinks, budget, key) === null) {
      throw bad(`symlink ${show(key)} -> ${show(target)} escapes the package root (through other symlinks)`);
    }
  }
  for (const [rawPath, target] of hardlinks) {
    const segs = segmentsOf(target);
    if (symlinks.has(segs.join('/'))) {
      throw bad(`hard link ${show(rawPath)} -> ${show(target)} points at a symlink`);
    }
    const parent = resolveInside([], segs.slice(0, -1).join('/'), symlinks, { hops: MAX_SYMLINK_HOPS }, rawPath);
    if (parent === null) throw bad(`hard link ${show(rawPath)} -> ${show(target)} escapes the package root`);
  }

  if (!manifestSeen || manifestText === undefined) {
    throw bad(`package has no ${MANIFEST_FILE} at its root`);
  }
  return { manifest: parseManifest(manifestText), digest, files, unpackedBytes };
}

/** Parses and validates kiln.json (zod defaults applied). */
export function parseManifest(bytes: Buffer): Manifest {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw bad(`${MANIFEST_FILE} is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    throw bad(`${MANIFEST_FILE} is not valid JSON: ${(e as Error).message}`);
  }
  const manifest = checkManifest(json);
  if (typeof manifest === 'string') throw bad(`${MANIFEST_FILE} is invalid: ${manifest}`);
  return manifest;
}
