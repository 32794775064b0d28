// invoker/pool/placement.ts: where a call goes (warm → thawed → prewarm → cold) and what to evict
// for room (least recently used idle first, stem cells last), over plain Slot objects.
import { evictionsFor, place, Slot, Want } from '../../invoker/pool/placement';

let n = 0;
function slot(over: Partial<Slot> = {}): Slot {
  return { id: `s${++n}`, state: 'ready', fnKey: 'ns/f@1', runtime: 'node20', memoryMB: 256, inFlight: 0, lastUsed: 1000, ...over };
}
const stem = (over: Partial<Slot> = {}) => slot({ state: 'prewarm', fnKey: null, ...over });
const want = (over: Partial<Want> = {}): Want => ({ fnKey: 'ns/f@1', runtime: 'node20', concurrency: 1, ...over });
const ids = (slots: Slot[] | null) => slots && slots.map((s) => s.id);

describe('place: order of preference', () => {
  it('asks for a cold start when there is nothing', () => {
    expect(place([], want())).toEqual({ kind: 'cold' });
  });

  it('prefers warm over thawed, prewarm and cold', () => {
    const warm = slot({ state: 'ready', lastUsed: 1 });
    const slots = [stem({ lastUsed: 9 }), slot({ state: 'frozen', lastUsed: 9 }), warm];
    expect(place(slots, want())).toEqual({ kind: 'warm', slot: warm });
  });

  it('prefers thawed over prewarm when nothing is ready', () => {
    const frozen = slot({ state: 'frozen' });
    expect(place([stem(), frozen], want())).toEqual({ kind: 'thawed', slot: frozen });
  });

  it('prefers a stem cell of the runtime over a cold start', () => {
    const s = stem();
    expect(place([s], want())).toEqual({ kind: 'prewarm', slot: s });
  });

  it('returns the very slot object it chose (the pool relies on identity)', () => {
    const r = slot();
    const p = place([r], want());
    expect(p.kind === 'warm' && p.slot).toBe(r);
  });
});

describe('place: only containers that may serve the call', () => {
  it("never uses another function's container", () => {
    const slots = [slot({ fnKey: 'ns/g@1' }), slot({ fnKey: 'ns/g@1', state: 'frozen' }), slot({ fnKey: 'other/f@1' })];
    expect(place(slots, want())).toEqual({ kind: 'cold' });
  });

  it("never uses another version's container, older or newer", () => {
    const slots = [slot({ fnKey: 'ns/f@1' }), slot({ fnKey: 'ns/f@3', state: 'frozen' })];
    expect(place(slots, want({ fnKey: 'ns/f@2' }))).toEqual({ kind: 'cold' });
  });

  it('does not confuse a name that is a prefix of another', () => {
    expect(place([slot({ fnKey: 'ns/f@10' }), slot({ fnKey: 'ns/ff@1' })], want({ fnKey: 'ns/f@1' }))).toEqual({ kind: 'cold' });
  });

  it('never uses a retiring container, ready, frozen or busy with room', () => {
    const slots = [
      slot({ retiring: true }),
      slot({ state: 'frozen', retiring: true }),
      slot({ state: 'busy', inFlight: 1, retiring: true }),
    ];
    expect(place(slots, want({ concurrency: 4 }))).toEqual({ kind: 'cold' });
  });

  it('goes past a retiring container to a stem cell', () => {
    const s = stem();
    expect(place([slot({ retiring: true }), s], want())).toEqual({ kind: 'prewarm', slot: s });
  });

  it('uses a stem cell only of the same runtime', () => {
    expect(place([stem({ runtime: 'python3' })], want())).toEqual({ kind: 'cold' });
    const mine = stem({ runtime: 'node20' });
    expect(place([stem({ runtime: 'python3' }), mine], want())).toEqual({ kind: 'prewarm', slot: mine });
  });

  it('never uses a stem cell that is still starting or being removed', () => {
    const slots = [stem({ state: 'starting' }), stem({ state: 'removing' }), stem({ state: 'removed' })];
    expect(place(slots, want())).toEqual({ kind: 'cold' });
  });

  it('never uses its own container while it is starting, removing or removed', () => {
    const slots = [slot({ state: 'starting' }), slot({ state: 'removing' }), slot({ state: 'removed' })];
    expect(place(slots, want({ concurrency: 8 }))).toEqual({ kind: 'cold' });
  });
});

describe('place: busy containers and concurrency', () => {
  it('does not share a busy container when concurrency is 1', () => {
    expect(place([slot({ state: 'busy', inFlight: 1 })], want({ concurrency: 1 }))).toEqual({ kind: 'cold' });
  });

  it('shares a busy container with room when concurrency > 1', () => {
    const busy = slot({ state: 'busy', inFlight: 1 });
    expect(place([busy], want({ concurrency: 2 }))).toEqual({ kind: 'warm', slot: busy });
  });

  it('does not share a busy container that is full', () => {
    expect(place([slot({ state: 'busy', inFlight: 2 })], want({ concurrency: 2 }))).toEqual({ kind: 'cold' });
  });

  it('prefers a busy container with room over an idle one, so the idle one can freeze', () => {
    const busy = slot({ state: 'busy', inFlight: 1, lastUsed: 1 });
    const ready = slot({ state: 'ready', lastUsed: 99 });
    expect(place([ready, busy], want({ concurrency: 3 }))).toEqual({ kind: 'warm', slot: busy });
  });

  it('falls back to a ready one when the busy ones are full', () => {
    const ready = slot({ state: 'ready' });
    expect(place([slot({ state: 'busy', inFlight: 2 }), ready], want({ concurrency: 2 }))).toEqual({ kind: 'warm', slot: ready });
  });
});

describe('place: most recently used', () => {
  it('chooses the most recently used ready container', () => {
    const a = slot({ lastUsed: 100 });
    const b = slot({ lastUsed: 300 });
    const c = slot({ lastUsed: 200 });
    expect(place([a, b, c], want())).toEqual({ kind: 'warm', slot: b });
  });

  it('chooses the most recently used frozen container', () => {
    const a = slot({ state: 'frozen', lastUsed: 300 });
    const b = slot({ state: 'frozen', lastUsed: 100 });
    const c = slot({ state: 'frozen', lastUsed: 200 });
    expect(place([b, a, c], want())).toEqual({ kind: 'thawed', slot: a });
  });

  it('still prefers an older ready container to a newer frozen one', () => {
    const ready = slot({ state: 'ready', lastUsed: 1 });
    expect(place([slot({ state: 'frozen', lastUsed: 999 }), ready], want())).toEqual({ kind: 'warm', slot: ready });
  });
});

describe('evictionsFor', () => {
  it('returns [] when the memory fits, without touching idle containers', () => {
    expect(evictionsFor([], 256, 512)).toEqual([]);
    expect(evictionsFor([slot({ memoryMB: 128 }), stem({ memoryMB: 128 })], 256, 512)).toEqual([]);
  });

  it('returns [] at an exact fit', () => {
    expect(evictionsFor([slot({ memoryMB: 256 })], 256, 512)).toEqual([]);
  });

  it('counts busy, starting and removing containers as using memory, but not removed ones', () => {
    const slots = [slot({ state: 'busy', inFlight: 1, memoryMB: 128 }), slot({ state: 'starting', memoryMB: 128 }), slot({ state: 'removing', memoryMB: 128 })];
    expect(evictionsFor(slots, 256, 512)).toBeNull();
    expect(evictionsFor([slot({ state: 'removed', memoryMB: 512 })], 512, 512)).toEqual([]);
  });

  it('evicts the least recently used idle container first, and only as many as needed', () => {
    const old = slot({ lastUsed: 100 });
    const mid = slot({ state: 'frozen', lastUsed: 200 });
    const recent = slot({ lastUsed: 300 });
    expect(ids(evictionsFor([recent, mid, old], 256, 768))).toEqual([old.id]);
    expect(ids(evictionsFor([recent, mid, old], 512, 768))).toEqual([old.id, mid.id]);
  });

  it('treats ready and frozen alike, ordering only by last use', () => {
    const frozen = slot({ state: 'frozen', lastUsed: 100 });
    const ready = slot({ state: 'ready', lastUsed: 50 });
    expect(ids(evictionsFor([frozen, ready], 256, 512))).toEqual([ready.id]);
  });

  it('evicts stem cells last, even when they are the least recently used', () => {
    const s = stem({ lastUsed: 1 });
    const a = slot({ lastUsed: 500 });
    const b = slot({ lastUsed: 400 });
    expect(ids(evictionsFor([s, a, b], 256, 768))).toEqual([b.id]);
    expect(ids(evictionsFor([s, a, b], 768, 768))).toEqual([b.id, a.id, s.id]);
  });

  it('evicts containers of superseded versions before any other, however recently used; stem cells still last', () => {
    const old = slot({ fnKey: 'ns/f@1', retiring: true, lastUsed: 900 });
    const lru = slot({ fnKey: 'ns/g@1', lastUsed: 100 });
    const s = stem({ lastUsed: 1 });
    expect(ids(evictionsFor([lru, s, old], 256, 768))).toEqual([old.id]);
    expect(ids(evictionsFor([lru, s, old], 512, 768))).toEqual([old.id, lru.id]);
    const oldStemOrder = evictionsFor([s, slot({ retiring: true, lastUsed: 5 })], 512, 512);
    expect(oldStemOrder?.map((x) => x.state)).toEqual(['ready', 'prewarm']);
  });

  it('orders several stem cells by last use among themselves', () => {
    const s1 = stem({ lastUsed: 20 });
    const s2 = stem({ lastUsed: 10 });
    expect(ids(evictionsFor([s1, s2], 512, 512))).toEqual([s2.id, s1.id]);
  });

  it('never evicts busy or starting containers', () => {
    const busy = slot({ state: 'busy', inFlight: 1, lastUsed: 1 });
    const starting = slot({ state: 'starting', lastUsed: 2 });
    const ready = slot({ lastUsed: 999 });
    expect(ids(evictionsFor([busy, starting, ready], 256, 768))).toEqual([ready.id]);
    expect(evictionsFor([busy, starting], 256, 512)).toBeNull();
  });

  it('never evicts a container already being removed (it is not idle)', () => {
    expect(evictionsFor([slot({ state: 'removing' })], 256, 256)).toBeNull();
  });

  it('never evicts ids in keep', () => {
    const a = slot({ lastUsed: 1 });
    const b = slot({ lastUsed: 2 });
    expect(ids(evictionsFor([a, b], 256, 512, new Set([a.id])))).toEqual([b.id]);
    expect(evictionsFor([a, b], 512, 512, new Set([a.id]))).toBeNull();
  });

  it('returns null when it cannot fit even after evicting every idle container', () => {
    const slots = [slot({ memoryMB: 256 }), stem({ memoryMB: 128 }), slot({ state: 'busy', inFlight: 1, memoryMB: 256 })];
    expect(evictionsFor(slots, 513, 768)).toBeNull(); // 256 busy + 513 > 768 with every idle one gone
    expect(ids(evictionsFor(slots, 512, 768))).toHaveLength(2); // and exactly at the edge it does fit
    expect(evictionsFor([], 1024, 512)).toBeNull();
  });

  it('does not change the slots it is given', () => {
    const slots = [slot({ lastUsed: 3 }), slot({ lastUsed: 1 }), slot({ lastUsed: 2 })];
    const before = slots.map((s) => ({ ...s }));
    evictionsFor(slots, 512, 768);
    expect(slots).toEqual(before);
  });
});
