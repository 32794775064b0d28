// Start-up and shutdown cleanup: removes every container, overlay mount, bundle folder and
// cgroup under this invoker's own runc root, containers folder and cgroup parent: what a
// crashed predecessor (or this invoker, at shutdown) left. Nothing outside them is touched.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Logger } from '../common/log';
import { removeCgroupTree, removeEmptyParents } from './cgroups';
import { OciRuntime } from './oci/runtime';
import { unmountAll } from './rootfs';

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
  removed += await unmountAll(o.containersDir);
  for (const d of await fsp.readdir(o.containersDir).catch(() => [] as string[])) {
    await fsp.rm(path.join(o.containersDir, d), { recursive: true, force: true });
  }
  await removeCgroupTree(o.cgroupParent);
  await removeEmptyParents([path.posix.dirname(o.cgroupParent)]);
  if (removed) log.warn({ removed }, 'removed containers and mounts left by a previous invoker');
  return removed;
}

/**
 * Invokers sharing a state dir (several per host) each own `runc/ID`, `containers/ID` and the
 * cgroup parent `/kiln/ID`. One that starts removes those of every other id whose heartbeat is
 * gone: what crashed invokers left. `live` must come from Redis; on doubt, call nothing. Run at
 * start and every KILN_PEER_SWEEP_MS, so a crashed invoker's containers do not outlive it long.
 */
export async function removeDeadPeers(stateDir: string, self: string, live: ReadonlySet<string>, make: (id: string) => Owned, log: Logger, quietMs: number): Promise<string[]> {
  const ids = new Set<string>();
  for (const sub of ['runc', 'containers']) {
    for (const d of await fsp.readdir(path.join(stateDir, sub)).catch(() => [] as string[])) ids.add(d);
  }
  // An invoker just starting has folders but no heartbeat yet: only folders untouched for
  // `quietMs` belong to a dead one.
  const quiet = async (id: string) => {
    const st = await fsp.stat(path.join(stateDir, 'containers', id)).catch(() => null);
    return !st || Date.now() - st.mtimeMs > quietMs;
  };
  const dead: string[] = [];
  for (const id of ids) if (id !== self && !live.has(id) && /^[a-z0-9-]{1,32}$/.test(id) && (await quiet(id))) dead.push(id);
  for (const id of dead) {
    const owned = make(id);
    await removeLeftovers(owned, log);
    await fsp.rm(path.join(stateDir, 'runc', id), { recursive: true, force: true });
    await fsp.rm(owned.containersDir, { recursive: true, force: true });
    log.warn({ invoker: id }, 'removed what a dead invoker left on this host');
  }
  return dead;
}
