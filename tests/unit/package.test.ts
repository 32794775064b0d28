// gateway/package.ts: every way a hostile or broken package is refused, and the happy path.
// Tarballs are written by hand (raw 512-byte ustar blocks) so that headers node-tar would never
// produce (absolute paths, '..', devices, escaping links) can be crafted; the happy path also
// uses node-tar's own packer on a real directory.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import * as tar from 'tar';
import { KilnError } from '../../common/errors';
import { inspectPackage } from '../../gateway/package';

type Type = 'file' | 'dir' | 'symlink' | 'link' | 'chardev' | 'blockdev' | 'fifo' | string;
const TYPEFLAG: Record<string, string> = {
  file: '0', link: '1', symlink: '2', chardev: '3', blockdev: '4', dir: '5', fifo: '6',
};

interface Spec {
  path: string;
  type?: Type;
  data?: string | Buffer;
  linkpath?: string;
  /** declared size, when it should differ from the data written */
  size?: number;
}

function octal(buf: Buffer, off: number, len: number, value: number): void {
  buf.write(value.toString(8).padStart(len - 1, '0') + '\0', off, len, 'ascii');
}

/** One raw ustar header block. */
function header(name: string, typeflag: string, size: number, linkname = ''): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 100, 'utf8');
  octal(b, 100, 8, typeflag === '5' ? 0o755 : 0o644);
  octal(b, 108, 8, 0);
  octal(b, 116, 8, 0);
  octal(b, 124, 12, size);
  octal(b, 136, 12, 1_700_000_000);
  b.write(typeflag, 156, 1, 'ascii');
  b.write(linkname, 157, 100, 'utf8');
  b.write('ustar\u000000', 257, 8, 'ascii');
  b.fill(0x20, 148, 156); // checksum computed with its own field as spaces
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return b;
}

const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);

function rawTar(specs: Spec[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of specs) {
    const type = s.type ?? 'file';
    const data = Buffer.from(s.data ?? '');
    parts.push(header(s.path, TYPEFLAG[type] ?? type, s.size ?? data.length, s.linkpath ?? ''));
    if (data.length) parts.push(data, pad(data.length));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const tgz = (specs: Spec[]) => zlib.gzipSync(rawTar(specs));

const MANIFEST = { name: 'hello', runtime: 'node20', handler: 'index.handler' };
const kiln = (m: unknown = MANIFEST): Spec => ({ path: 'kiln.json', data: JSON.stringify(m) });
const code: Spec = { path: 'index.js', data: 'exports.handler = async () => 1;\n' };

async function rejection(p: Promise<unknown>): Promise<KilnError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(KilnError);
    expect((e as KilnError).code).toBe('bad_request');
    return e as KilnError;
  }
  throw new Error('expected the package to be refused');
}

const refuses = async (pkg: Buffer, pattern: RegExp, limits?: Parameters<typeof inspectPackage>[1]) => {
  const e = await rejection(inspectPackage(pkg, limits));
  expect(e.message).toMatch(pattern);
  return e;
};

describe('inspectPackage: happy path', () => {
  it('returns the manifest with defaults, the digest and the counts', async () => {
    const pkg = tgz([{ path: './', type: 'dir' }, kiln(), code, { path: 'lib/', type: 'dir' }, { path: 'lib/a.js', data: 'x' }]);
    const info = await inspectPackage(pkg);
    expect(info.manifest).toEqual({
      name: 'hello', runtime: 'node20', handler: 'index.handler',
      memoryMB: 256, timeoutMs: 60_000, concurrency: 1, env: {}, web: false,
    });
    expect(info.digest).toBe('sha256:' + createHash('sha256').update(pkg).digest('hex'));
    expect(info.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(info.files).toBe(5);
    expect(info.unpackedBytes).toBe(JSON.stringify(MANIFEST).length + code.data!.length + 1);
  });

  it('the digest changes with the bytes', async () => {
    const a = await inspectPackage(tgz([kiln(), code]));
    const b = await inspectPackage(tgz([kiln(), { path: 'index.js', data: 'exports.handler = async () => 2;\n' }]));
    expect(a.digest).not.toBe(b.digest);
  });

  it('accepts ./kiln.json and keeps explicit settings', async () => {
    const m = { ...MANIFEST, memoryMB: 128, timeoutMs: 2000, env: { A: 'b' }, web: true };
    const info = await inspectPackage(tgz([{ path: './kiln.json', data: JSON.stringify(m) }, code]));
    expect(info.manifest).toMatchObject({ memoryMB: 128, timeoutMs: 2000, env: { A: 'b' }, web: true, concurrency: 1 });
  });

  it('accepts symlinks and hard links that stay inside the package', async () => {
    const info = await inspectPackage(tgz([
      kiln(), code,
      { path: 'node_modules/x/', type: 'dir' },
      { path: 'node_modules/x/index.js', data: 'module.exports = 1' },
      { path: 'node_modules/.bin/', type: 'dir' },
      { path: 'node_modules/.bin/x', type: 'symlink', linkpath: '../x/index.js' },
      { path: 'alias.js', type: 'symlink', linkpath: './index.js' },
      { path: 'dir-link', type: 'symlink', linkpath: 'node_modules/x' },
      { path: 'via-link', type: 'symlink', linkpath: 'dir-link/../x/index.js' },
      { path: 'copy.js', type: 'link', linkpath: 'index.js' },
    ]));
    expect(info.files).toBe(10);
  });

  it('reads a package packed by node-tar from a real directory', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-pkg-'));
    try {
      fs.writeFileSync(path.join(dir, 'kiln.json'), JSON.stringify({ ...MANIFEST, name: 'packed' }));
      fs.writeFileSync(path.join(dir, 'index.js'), code.data as string);
      fs.mkdirSync(path.join(dir, 'node_modules', 'dep'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'node_modules', 'dep', 'index.js'), 'module.exports = 42;');
      fs.symlinkSync('dep', path.join(dir, 'node_modules', 'dep2'));
      const file = path.join(dir, '..', path.basename(dir) + '.tgz');
      await tar.c({ gzip: true, cwd: dir, file, portable: true }, ['.']);
      const pkg = fs.readFileSync(file);
      fs.rmSync(file);
      const info = await inspectPackage(pkg);
      expect(info.manifest.name).toBe('packed');
      expect(info.files).toBe(7); // ./, kiln.json, index.js, node_modules/, dep/, dep/index.js, dep2
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('accepts every example in functions/', async () => {
    const root = path.resolve(__dirname, '..', '..', 'functions');
    const names = fs.readdirSync(root).filter((n) => fs.existsSync(path.join(root, n, 'kiln.json')));
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) {
      const file = path.join(os.tmpdir(), `kiln-example-${name}-${process.pid}.tgz`);
      await tar.c({ gzip: true, cwd: path.join(root, name), file, portable: true }, ['.']);
      const pkg = fs.readFileSync(file);
      fs.rmSync(file);
      const info = await inspectPackage(pkg);
      expect(info.manifest.name).toBe(name);
      expect(info.manifest.runtime).toBe('node20');
    }
  });
});

describe('inspectPackage: not a gzipped tar', () => {
  it('refuses bytes that are not gzip', async () => {
    await refuses(Buffer.from('hello, this is not an archive'), /not a gzip-compressed tar/);
    await refuses(Buffer.alloc(0), /not a gzip-compressed tar/);
  });

  it('refuses an uncompressed tar', async () => {
    await refuses(rawTar([kiln(), code]), /not a gzip-compressed tar/);
  });

  it('refuses gzip data that is not a tar', async () => {
    await refuses(zlib.gzipSync(Buffer.from('just some text\n'.repeat(100))), /not a valid tar archive/);
  });

  it('refuses an empty gzip stream', async () => {
    await refuses(zlib.gzipSync(Buffer.alloc(0)), /empty/);
  });

  it('refuses a truncated gzip stream', async () => {
    const pkg = tgz([kiln(), { path: 'big.bin', data: Buffer.from(createHash('sha512').update('x').digest('hex').repeat(200)) }]);
    await refuses(pkg.subarray(0, pkg.length - 40), /not a valid (gzip stream|tar archive)/);
  });

  it('refuses corrupt gzip data', async () => {
    const pkg = Buffer.from(tgz([kiln(), code]));
    for (let i = 12; i < pkg.length - 8; i++) pkg[i] ^= 0x5a;
    await refuses(pkg, /not a valid (gzip stream|tar archive)/);
  });

  it('refuses a tar with a bad header checksum', async () => {
    const raw = rawTar([kiln(), code]);
    raw[0] ^= 0x01; // first byte of the first name: checksum no longer matches
    await refuses(zlib.gzipSync(raw), /not a valid tar archive.*checksum|checksum/);
  });

  it('refuses a tar gzipped twice', async () => {
    await refuses(zlib.gzipSync(tgz([kiln(), code])), /compressed twice/);
  });
});

describe('inspectPackage: paths', () => {
  it.each([
    ['/etc/cron.d/evil', /entry "\/etc\/cron\.d\/evil" is an absolute path/],
    ['/kiln.json', /entry "\/kiln\.json" is an absolute path/],
    ['../evil.js', /entry "\.\.\/evil\.js" contains a '\.\.' segment/],
    ['a/../../evil.js', /entry "a\/\.\.\/\.\.\/evil\.js" contains a '\.\.' segment/],
    ['a/b/..', /entry "a\/b\/\.\." contains a '\.\.' segment/],
    ['./../x', /entry "\.\/\.\.\/x" contains a '\.\.' segment/],
  ])('refuses entry path %s', async (p, pattern) => {
    await refuses(tgz([kiln(), code, { path: p, data: 'x' }]), pattern);
  });

  it("refuses '..' hidden in a pax extended header", async () => {
    const pax = new tar.Pax({ path: '../../pax-evil.js' }).encode();
    const raw = rawTar([kiln(), code]);
    const evil = Buffer.concat([pax, header('innocent.js', '0', 1), Buffer.from('x'), pad(1)]);
    const pkg = zlib.gzipSync(Buffer.concat([raw.subarray(0, raw.length - 1024), evil, Buffer.alloc(1024)]));
    await refuses(pkg, /entry "\.\.\/\.\.\/pax-evil\.js" contains a '\.\.' segment/);
  });

  it('refuses an absolute path in a GNU long-name record', async () => {
    const long = '/' + 'x'.repeat(150) + '/evil.js';
    const body = Buffer.from(long + '\0');
    const rec = Buffer.concat([header('././@LongLink', 'L', body.length), body, pad(body.length)]);
    const raw = rawTar([kiln(), code]);
    const evil = Buffer.concat([rec, header('innocent.js', '0', 1), Buffer.from('x'), pad(1)]);
    const pkg = zlib.gzipSync(Buffer.concat([raw.subarray(0, raw.length - 1024), evil, Buffer.alloc(1024)]));
    await refuses(pkg, /is an absolute path/);
  });

  it('refuses an entry that replaces the package root', async () => {
    await refuses(tgz([{ path: './', type: 'symlink', linkpath: 'x' }, kiln(), code]), /replaces the package root/);
  });

  it('refuses an entry written through a symlink of the package', async () => {
    await refuses(
      tgz([kiln(), code, { path: 'sub/', type: 'dir' }, { path: 's', type: 'symlink', linkpath: 'sub' }, { path: 's/f.js', data: 'x' }]),
      /entry "s\/f\.js" lies inside symlink "s"/,
    );
  });
});

describe('inspectPackage: links', () => {
  it('refuses a symlink to an absolute path', async () => {
    await refuses(tgz([kiln(), code, { path: 'passwd', type: 'symlink', linkpath: '/etc/passwd' }]),
      /symlink "passwd" points to absolute path "\/etc\/passwd"/);
  });

  it('refuses a symlink escaping from its own directory', async () => {
    await refuses(tgz([kiln(), code, { path: 'a/', type: 'dir' }, { path: 'a/up', type: 'symlink', linkpath: '../../etc' }]),
      /symlink "a\/up" -> "\.\.\/\.\.\/etc" escapes the package root/);
    await refuses(tgz([kiln(), code, { path: 'up', type: 'symlink', linkpath: '..' }]), /symlink "up" -> "\.\." escapes/);
  });

  it('refuses a symlink that escapes through another symlink', async () => {
    // deep/s resolves to the root, so t -> deep/s/.. is the root's parent, although it looks inside.
    await refuses(tgz([
      kiln(), code,
      { path: 'deep/', type: 'dir' },
      { path: 'deep/s', type: 'symlink', linkpath: '..' },
      { path: 't', type: 'symlink', linkpath: 'deep/s/..' },
    ]), /symlink "t" -> "deep\/s\/\.\." escapes the package root/);
  });

  it('refuses a symlink loop', async () => {
    await refuses(tgz([kiln(), code, { path: 'a', type: 'symlink', linkpath: 'b' }, { path: 'b', type: 'symlink', linkpath: 'a' }]),
      /too many levels of symbolic links/);
  });

  it('refuses a hard link escaping the package', async () => {
    await refuses(tgz([kiln(), code, { path: 'h', type: 'link', linkpath: '../outside' }]),
      /hard link "h" -> "\.\.\/outside" escapes the package root/);
    await refuses(tgz([kiln(), code, { path: 'sub/', type: 'dir' }, { path: 'sub/h', type: 'link', linkpath: 'sub/../../x' }]),
      /hard link "sub\/h" -> "sub\/\.\.\/\.\.\/x" escapes the package root/);
  });

  it('refuses a hard link to an absolute path', async () => {
    await refuses(tgz([kiln(), code, { path: 'shadow', type: 'link', linkpath: '/etc/shadow' }]),
      /hard link "shadow" points to absolute path "\/etc\/shadow"/);
  });

  it('refuses a hard link to a symlink (it would move the symlink to another directory)', async () => {
    await refuses(tgz([
      kiln(), code,
      { path: 'a/', type: 'dir' }, { path: 'a/b/', type: 'dir' },
      { path: 'a/b/up', type: 'symlink', linkpath: '../..' },
      { path: 'h', type: 'link', linkpath: 'a/b/up' },
    ]), /hard link "h" -> "a\/b\/up" points at a symlink/);
  });

  it('refuses a hard link through an escaping symlink', async () => {
    await refuses(tgz([
      kiln(), code,
      { path: 'd/', type: 'dir' },
      { path: 'd/s', type: 'symlink', linkpath: '..' },
      { path: 'h', type: 'link', linkpath: 'd/s/../x' },
    ]), /hard link "h" -> "d\/s\/\.\.\/x" escapes the package root/);
  });
});

describe('inspectPackage: entry types', () => {
  it.each([
    ['chardev', 'CharacterDevice'],
    ['blockdev', 'BlockDevice'],
    ['fifo', 'FIFO'],
  ])('refuses a %s entry', async (type, name) => {
    await refuses(tgz([kiln(), code, { path: 'dev-thing', type }]),
      new RegExp(`entry "dev-thing" has unsupported type ${name}`));
  });

  it('refuses an unknown entry type', async () => {
    await refuses(tgz([kiln(), code, { path: 'odd', type: 'Q' }]), /entry "odd" has unsupported type/);
  });

  it('refuses a GNU dump-dir entry', async () => {
    await refuses(tgz([kiln(), code, { path: 'dumpdir/', type: 'D' }]), /entry "dumpdir\/" has unsupported type GNUDumpDir/);
  });
});

describe('inspectPackage: limits', () => {
  it('refuses more than maxFiles entries', async () => {
    const many = Array.from({ length: 5 }, (_, i) => ({ path: `f${i}.js`, data: 'x' }));
    await refuses(tgz([kiln(), ...many]), /more than 3 entries \(at "f2\.js"\)/, { maxFiles: 3 });
    await expect(inspectPackage(tgz([kiln(), ...many]), { maxFiles: 6 })).resolves.toMatchObject({ files: 6 });
  });

  it('refuses more than maxUnpackedBytes of content, naming the entry that crossed it', async () => {
    const kb = 'x'.repeat(400);
    await refuses(tgz([kiln(), { path: 'a', data: kb }, { path: 'b', data: kb }, { path: 'c', data: kb }]),
      /unpacks to more than 800 bytes \(limit reached at entry "b"\)/, { maxUnpackedBytes: 800 });
  });

  it('refuses an entry whose declared size is above the default limit before reading it', async () => {
    // The header claims 7 GiB; only a little data follows. The size check fires on the header.
    const pkg = zlib.gzipSync(Buffer.concat([rawTar([kiln()]).subarray(0, 1024), header('huge.bin', '0', 7 * 2 ** 30), Buffer.alloc(4096, 1)]));
    await refuses(pkg, /unpacks to more than 268435456 bytes \(limit reached at entry "huge\.bin"\)/);
  });

  it('stops early on a decompression bomb', async () => {
    // ~4 GiB of zeros after a 4 GiB file header, in a few MB of gzip. Reading it all would take
    // seconds of CPU; inspectPackage must give up at the limit.
    const Z = zlib.constants;
    const mib = zlib.deflateRawSync(Buffer.alloc(2 ** 20), { finishFlush: Z.Z_SYNC_FLUSH });
    const head = zlib.deflateRawSync(Buffer.concat([rawTar([kiln()]).subarray(0, 1024), header('bomb.bin', '0', 4 * 2 ** 30 - 512)]),
      { finishFlush: Z.Z_SYNC_FLUSH });
    const gzHeader = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    const body = Buffer.concat([head, ...Array.from({ length: 4096 }, () => mib), Buffer.from([3, 0])]);
    const pkg = Buffer.concat([gzHeader, body, Buffer.alloc(8)]); // trailer unchecked: never reached
    const t0 = Date.now();
    await refuses(pkg, /unpacks to more than 1048576 bytes/, { maxUnpackedBytes: 2 ** 20 });
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('stops early on a bomb hidden after the end of the archive', async () => {
    const Z = zlib.constants;
    const mib = zlib.deflateRawSync(Buffer.alloc(2 ** 20, 7), { finishFlush: Z.Z_SYNC_FLUSH });
    const head = zlib.deflateRawSync(rawTar([kiln(), code]), { finishFlush: Z.Z_SYNC_FLUSH });
    const gzHeader = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    const pkg = Buffer.concat([gzHeader, head, ...Array.from({ length: 4096 }, () => mib), Buffer.from([3, 0]), Buffer.alloc(8)]);
    const t0 = Date.now();
    await refuses(pkg, /decompression limit/, { maxUnpackedBytes: 2 ** 20, maxFiles: 10 });
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('inspectPackage: kiln.json', () => {
  it('refuses a package without kiln.json', async () => {
    await refuses(tgz([code]), /no kiln\.json at its root/);
  });

  it('refuses a kiln.json that is not at the root', async () => {
    await refuses(tgz([{ path: 'sub/', type: 'dir' }, { ...kiln(), path: 'sub/kiln.json' }, code]), /no kiln\.json at its root/);
  });

  it('refuses an empty archive', async () => {
    await refuses(zlib.gzipSync(Buffer.alloc(1024)), /no kiln\.json|not a valid tar archive/);
  });

  it('refuses invalid JSON', async () => {
    await refuses(tgz([{ path: 'kiln.json', data: '{ "name": "hello", ' }, code]), /kiln\.json is not valid JSON/);
    await refuses(tgz([{ path: 'kiln.json', data: '' }, code]), /kiln\.json is not valid JSON/);
  });

  it('refuses kiln.json failing the schema, listing each field and problem', async () => {
    const e = await refuses(
      tgz([kiln({ name: 'Bad Name', runtime: 'python3', handler: 'index.handler', memoryMB: 1, colour: 'red' }), code]),
      /kiln\.json is invalid/,
    );
    expect(e.message).toMatch(/name: /);
    expect(e.message).toMatch(/runtime: /);
    expect(e.message).toMatch(/memoryMB: /);
    expect(e.message).toMatch(/colour/);
  });

  it('refuses a kiln.json that is not an object', async () => {
    await refuses(tgz([{ path: 'kiln.json', data: '[1,2]' }, code]), /kiln\.json is invalid: \(root\): /);
  });

  it('refuses a kiln.json bigger than 64 KiB', async () => {
    const big = JSON.stringify({ ...MANIFEST, env: { PAD: 'x'.repeat(70 * 1024) } });
    await refuses(tgz([{ path: 'kiln.json', data: big }, code]), /kiln\.json is \d+ bytes, more than the 65536 allowed/);
  });

  it('refuses a kiln.json that is not a regular file', async () => {
    await refuses(tgz([{ path: 'real.json', data: JSON.stringify(MANIFEST) }, { path: 'kiln.json', type: 'symlink', linkpath: 'real.json' }, code]),
      /kiln\.json must be a regular file/);
    await refuses(tgz([{ path: 'kiln.json/', type: 'dir' }, code]), /kiln\.json must be a regular file/);
  });

  it('refuses two kiln.json entries', async () => {
    await refuses(tgz([kiln(), code, { path: './kiln.json', data: JSON.stringify({ ...MANIFEST, name: 'other' }) }]),
      /kiln\.json appears more than once/);
  });
});
