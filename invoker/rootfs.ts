// A container's root filesystem: a read-only overlayfs of its layers (function code on top,
// then the language runtime, then the base). With no upper layer the mount itself is
// read-only; the container's only writable places are its size-limited /tmp and /dev/shm.
import * as fsp from 'node:fs/promises';
import { MNT_DETACH, mount, MS_BIND, MS_RDONLY, MS_SHARED, umount } from './native/mount';

export async function mountRootfs(target: string, layersTopFirst: string[]): Promise<void> {
  await fsp.mkdir(target, { recursive: true });
  mountOverlay(target, layersTopFirst);
}

/** A read-only overlay of `layersTopFirst` on an existing folder. */
export function mountOverlay(target: string, layersTopFirst: string[]): void {
  mount('overlay', target, 'overlay', MS_RDONLY, `lowerdir=${layersTopFirst.join(':')}`);
}

/**
 * Unmounts everything at or under a folder, deepest first; returns how many. A mount gone by
 * the time its turn comes (its unmount propagated from a peer) is not an error.
 */
export async function unmountAll(dir: string): Promise<number> {
  let removed = 0;
  for (const m of await mountedUnder(dir)) {
    try {
      umount(m, MNT_DETACH);
      removed++;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
    }
  }
  return removed;
}

/**
 * Makes a folder a mount point of its own with shared propagation, so that a container that
 * bind-mounts it (with rslave) later sees what the host mounts on it: how a prewarmed
 * container receives its function's code without a restart.
 */
export async function sharedMountPoint(dir: string): Promise<string> {
  await fsp.mkdir(dir, { recursive: true });
  mount(dir, dir, null, MS_BIND);
  mount(null, dir, null, MS_SHARED);
  return dir;
}

/** Mount points at or under a folder, deepest first (read from /proc/self/mounts). */
export async function mountedUnder(dir: string): Promise<string[]> {
  const text = await fsp.readFile('/proc/self/mounts', 'utf8');
  return text
    .split('\n')
    .map((l) => (l.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))) // octal escapes
    .filter((m) => m && (m === dir || m.startsWith(dir + '/')))
    .sort((a, b) => b.length - a.length);
}
