// Start-up and shutdown cleanup: removes every container, overlay mount, bundle folder and
// cgroup under this invoker's own runc root, containers folder and cgroup parent: what a
// crashed predecessor (or this invoker, at shutdown) left. Nothing outside them is touched.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Logger } from '../common/log';
import { removeCgroupTree, removeEmptyParents } from './cgroups';
import { OciRuntime } from './oci/runtime';
import { mountedUnder } from './rootfs';
import { run } from '../common/process';

export interface Owned {
  runtime: OciRuntime;
  containersDir: string;
  cgroupParent: string; // /kiln/<invoker id>
}

export async function removeLeftovers(o: Owned, log: Logger): Promise<number> {
  let removed = 0;
  for (const id of await o.runtime.list().catch(() => [])) {
    await o.runtime.delete(id);
    removed++;
  }
  for (const m of await mountedUnder(o.containersDir)) {
    await run('umount', ['--lazy', m]);
    removed++;
  }
  for (const d of await fsp.readdir(o.containersDir).catch(() => [] as string[])) {
    await fsp.rm(path.join(o.containersDir, d), { recursive: true, force: true });
  }
  await removeCgroupTree(o.cgroupParent);
  await removeEmptyParents([path.posix.dirname(o.cgroupParent)]);
  if (removed) log.warn({ removed }, 'removed containers and mounts left by a previous invoker');
  return removed;
}
