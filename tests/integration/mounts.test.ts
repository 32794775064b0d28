// The invoker's mounts through its addon (invoker/native/mount.c): the overlay root every
// container stands on, the shared mount point a stem cell's code arrives through, the lazy
// unmount that removes them, and errors that name errno.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { mount, MS_BIND, umount } from '../../invoker/native/mount';
import { mountedUnder, mountOverlay, mountRootfs, sharedMountPoint, unmountAll } from '../../invoker/rootfs';

let dir = '';
beforeEach(async () => {
  dir = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-mounts-'))); // as /proc/self/mounts shows it
  for (const [layer, file, text] of [['top', 'a', 'top'], ['bottom', 'a', 'bottom'], ['bottom', 'b', 'only below']]) {
    await fsp.mkdir(path.join(dir, layer), { recursive: true });
    await fsp.writeFile(path.join(dir, layer, file), text);
  }
});
afterEach(async () => {
  await unmountAll(dir);
  expect(await mountedUnder(dir)).toEqual([]);
  await fsp.rm(dir, { recursive: true, force: true });
});

test('an overlay root: upper layers win, every layer shows through, nothing can be written', async () => {
  const root = path.join(dir, 'root');
  await mountRootfs(root, [path.join(dir, 'top'), path.join(dir, 'bottom')]);
  expect(await mountedUnder(dir)).toEqual([root]);
  expect(fs.readFileSync(path.join(root, 'a'), 'utf8')).toBe('top');
  expect(fs.readFileSync(path.join(root, 'b'), 'utf8')).toBe('only below');
  expect(() => fs.writeFileSync(path.join(root, 'c'), 'x')).toThrow(expect.objectContaining({ code: 'EROFS' }));
  expect(await unmountAll(dir)).toBe(1);
  expect(fs.readdirSync(root)).toEqual([]);
});

test('a shared mount point: what is mounted on it later propagates to its bind mounts', async () => {
  const shared = await sharedMountPoint(path.join(dir, 'function'));
  const info = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === shared);
  expect(info).toMatch(/ shared:\d+/);
  // A bind of it (as a container's /function is) sees an overlay mounted on it afterwards.
  const view = path.join(dir, 'view');
  await fsp.mkdir(view);
  mount(shared, view, null, MS_BIND);
  mountOverlay(shared, [path.join(dir, 'top'), path.join(dir, 'bottom')]);
  expect(fs.readFileSync(path.join(view, 'a'), 'utf8')).toBe('top');
  expect(fs.readFileSync(path.join(view, 'b'), 'utf8')).toBe('only below');
  expect(await unmountAll(dir)).toBeGreaterThanOrEqual(3);
});

test('failures throw with errno as the code and say what was mounted where', () => {
  const missing = path.join(dir, 'missing');
  expect(() => mountOverlay(missing, [path.join(dir, 'top'), path.join(dir, 'bottom')])).toThrow(expect.objectContaining({ code: 'ENOENT', message: expect.stringContaining(missing) }));
  expect(() => umount(path.join(dir, 'top'))).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  expect(() => mountOverlay(path.join(dir, 'top'), [path.join(dir, 'nope'), path.join(dir, 'bottom')])).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  // A path the kernel would read shorter than it is, or no path at all, never reaches it.
  // (TypeErrors made by the addon belong to Node's own realm, not jest's: matched by name.)
  const typeError = expect.objectContaining({ name: 'TypeError' });
  expect(() => mount(null, `${dir}/top\0/etc`, null, MS_BIND)).toThrow(typeError);
  expect(() => umount(undefined as unknown as string)).toThrow(typeError);
  expect(fs.readFileSync('/proc/self/mounts', 'utf8')).not.toContain(dir);
});
