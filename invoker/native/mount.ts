// The invoker's mounts, made with the system calls themselves (the addon built from mount.c)
// instead of mount(8) and umount(8): a spawn from the invoker costs milliseconds of fork(),
// on every cold start and every specialisation of a stem cell.
import * as path from 'node:path';
import { getSystemErrorName } from 'node:util';
import { REPO_ROOT } from '../../common/paths';

interface Addon {
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount(target: string, flags: number): void;
}

// <sys/mount.h>
export const MS_RDONLY = 0x1;
export const MS_BIND = 0x1000;
export const MS_SHARED = 0x100000;
export const MNT_DETACH = 0x2;

const ADDON = path.join(REPO_ROOT, 'build', 'Release', 'kiln_mount.node');
let addon: Addon | undefined;

/** Loads the addon; the invoker calls it at start, so a missing build is found there. */
export function loadMountAddon(): void {
  if (addon) return;
  try {
    addon = require(ADDON) as Addon;
  } catch (e) {
    throw new Error(`the invoker's mount addon cannot be loaded (${(e as Error).message.split('\n')[0]}): \`npm ci\` builds it, with make, gcc, g++ and python3 (scripts/setup.sh installs them)`);
  }
}

function native(): Addon {
  loadMountAddon();
  return addon!;
}

/** mount(2); a failure throws an Error whose `code` is errno's name (ENOENT, EPERM...). */
export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
  try {
    native().mount(source, target, fstype, flags, data);
  } catch (e) {
    throw withContext(e, `mount ${fstype ?? ''} ${source ?? ''} on ${target}`);
  }
}

/** umount2(2). */
export function umount(target: string, flags = 0): void {
  try {
    native().umount(target, flags);
  } catch (e) {
    throw withContext(e, `umount ${target}`);
  }
}

function withContext(e: unknown, what: string): Error {
  const err = e as NodeJS.ErrnoException;
  const errno = Number(err.code);
  if (Number.isInteger(errno) && errno > 0) {
    err.errno = errno;
    err.code = getSystemErrorName(-errno); // ENOENT, EPERM...
  }
  err.message = `${what.replace(/ +/g, ' ')}: ${err.message}`;
  return err;
}
