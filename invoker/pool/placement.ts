// Placement and eviction: pure functions over plain data (no containers, no I/O), so they are
// tested on their own. Placement prefers a warm container of the same function version, then a
// frozen one (thawed), then a prewarmed stem cell of the runtime, and otherwise asks for a cold
// start. Eviction frees memory by removing idle containers: superseded versions first, then
// least recently used first.
import { StartKind } from '../../common/types';
import { IDLE, State } from './states';

export interface Slot {
  id: string;
  state: State;
  fnKey: string | null; // null for a stem cell not yet specialised
  runtime: string;
  memoryMB: number;
  inFlight: number;
  lastUsed: number;
  retiring?: boolean; // an older version: takes no new calls
  preparing?: boolean; // being started, thawed or specialised: not yet shareable
}

export interface Want {
  fnKey: string;
  runtime: string;
  concurrency: number;
}

export type Placement = { kind: Exclude<StartKind, 'cold'>; slot: Slot } | { kind: 'cold' };

export function place(slots: readonly Slot[], want: Want): Placement {
  const mine = slots.filter((s) => s.fnKey === want.fnKey && !s.retiring);
  // Busy containers with room first: they are running already and keep others idle to freeze.
  const warm =
    mine.find((s) => s.state === 'busy' && !s.preparing && s.inFlight < want.concurrency) ??
    mostRecent(mine.filter((s) => s.state === 'ready'));
  if (warm) return { kind: 'warm', slot: warm };
  const frozen = mostRecent(mine.filter((s) => s.state === 'frozen'));
  if (frozen) return { kind: 'thawed', slot: frozen };
  const stem = slots.find((s) => s.state === 'prewarm' && s.runtime === want.runtime);
  if (stem) return { kind: 'prewarm', slot: stem };
  return { kind: 'cold' };
}

function mostRecent(slots: Slot[]): Slot | undefined {
  return slots.reduce<Slot | undefined>((best, s) => (!best || s.lastUsed > best.lastUsed ? s : best), undefined);
}

/**
 * Which idle containers to remove so that `neededMB` more fits in `capacityMB`: those of
 * superseded versions first (they take no calls again), then least recently used first; stem
 * cells last, since they are what makes the next first call fast. Returns null when even
 * removing every idle container would not make room: the call must wait.
 */
export function evictionsFor(slots: readonly Slot[], neededMB: number, capacityMB: number, keep: ReadonlySet<string> = new Set()): Slot[] | null {
  let used = slots.filter((s) => s.state !== 'removed').reduce((n, s) => n + s.memoryMB, 0);
  if (used + neededMB <= capacityMB) return [];
  const idle = slots
    .filter((s) => IDLE.includes(s.state) && !keep.has(s.id))
    .sort((a, b) => Number(a.state === 'prewarm') - Number(b.state === 'prewarm') || Number(!a.retiring) - Number(!b.retiring) || a.lastUsed - b.lastUsed);
  const out: Slot[] = [];
  for (const s of idle) {
    out.push(s);
    used -= s.memoryMB;
    if (used + neededMB <= capacityMB) return out;
  }
  return null;
}
