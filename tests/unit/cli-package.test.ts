// packDirectory: deterministic bytes (so deploys of unchanged code keep their digest), nested
// files and node_modules included, .git left out, and a clear error without a valid kiln.json.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tar from 'tar';
import { listFiles, packDirectory, PackageError } from '../../cli/package';

const manifest = { name: 'hello', runtime: 'node20', handler: 'index.handler' };

async function makeFunctionDir(root: string, files: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(root, 'fn-'));
  for (const [rel, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fs.writeFile(path.join(dir, rel), content);
  }
  return dir;
}

async function entriesOf(tgz: Buffer): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const parser = new tar.Parser({
    onReadEntry: (entry) => {
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => out.set(entry.path.replace(/\/$/, ''), Buffer.concat(chunks).toString()));
    },
  });
  await new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
    parser.end(tgz);
  });
  return out;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('packDirectory', () => {
  let root: string;
  const base = {
    'kiln.json': JSON.stringify(manifest),
    'index.js': 'exports.handler = async () => ({ ok: true });\n',
    'lib/util/deep.js': 'module.exports = 1;\n',
    'node_modules/left-pad/package.json': '{"name":"left-pad"}',
    'node_modules/left-pad/index.js': 'module.exports = (s) => s;\n',
    '.git/HEAD': 'ref: refs/heads/main\n',
  };

  beforeAll(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-pack-'));
  });
  afterAll(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  it('gives identical bytes for the same directory, even after touching files', async () => {
    const dir = await makeFunctionDir(root, base);
    const first = await packDirectory(dir);
    const later = new Date(Date.now() + 60_000);
    await fs.utimes(path.join(dir, 'index.js'), later, later);
    const second = await packDirectory(dir);
    expect(sha(second)).toBe(sha(first));
    expect(first.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b])); // gzip magic
  });

  it('gives identical bytes for two copies created in a different order', async () => {
    const a = await makeFunctionDir(root, base);
    const reversed = Object.fromEntries(Object.entries(base).reverse());
    const b = await makeFunctionDir(root, reversed);
    expect(sha(await packDirectory(b))).toBe(sha(await packDirectory(a)));
  });

  it('gives different bytes when content changes', async () => {
    const a = await makeFunctionDir(root, base);
    const b = await makeFunctionDir(root, { ...base, 'lib/util/deep.js': 'module.exports = 2;\n' });
    const c = await makeFunctionDir(root, { ...base, 'extra.txt': 'x' });
    const digests = new Set([sha(await packDirectory(a)), sha(await packDirectory(b)), sha(await packDirectory(c))]);
    expect(digests.size).toBe(3);
  });

  it('includes kiln.json at the root, nested files and node_modules, but not .git', async () => {
    const dir = await makeFunctionDir(root, base);
    const entries = await entriesOf(await packDirectory(dir));
    expect(JSON.parse(entries.get('kiln.json') ?? '')).toEqual(manifest);
    expect(entries.get('lib/util/deep.js')).toBe('module.exports = 1;\n');
    expect(entries.get('node_modules/left-pad/index.js')).toBe('module.exports = (s) => s;\n');
    expect(entries.has('node_modules/left-pad')).toBe(true); // directory entries too
    expect([...entries.keys()].some((p) => p === '.git' || p.startsWith('.git/'))).toBe(false);
  });

  it('lists entries sorted, directories before their contents', async () => {
    const dir = await makeFunctionDir(root, base);
    const files = await listFiles(dir);
    expect(files).toEqual([...files].sort());
    expect(files.indexOf('lib')).toBeLessThan(files.indexOf('lib/util/deep.js'));
  });

  it('fails clearly without kiln.json', async () => {
    const dir = await makeFunctionDir(root, { 'index.js': '' });
    await expect(packDirectory(dir)).rejects.toThrow(PackageError);
    await expect(packDirectory(dir)).rejects.toThrow(/kiln\.json not found/);
  });

  it('fails clearly when kiln.json is not JSON or not a valid manifest', async () => {
    const bad = await makeFunctionDir(root, { 'kiln.json': '{ name: hello' });
    await expect(packDirectory(bad)).rejects.toThrow(/not valid JSON/);
    const invalid = await makeFunctionDir(root, { 'kiln.json': JSON.stringify({ ...manifest, runtime: 'cobol' }) });
    await expect(packDirectory(invalid)).rejects.toThrow(/runtime/);
  });

  it('fails clearly when the directory does not exist', async () => {
    await expect(packDirectory(path.join(root, 'nope'))).rejects.toThrow(/not a directory/);
  });
});
