// invoker/pool/states.ts: the container state machine. Every legal move is allowed, every other
// one throws IllegalTransition with runc's message, and removed is terminal.
import { assertMove, canMove, IDLE, IllegalTransition, State } from '../../invoker/pool/states';

const STATES: State[] = ['starting', 'prewarm', 'ready', 'busy', 'frozen', 'removing', 'removed'];

// Written out independently of the module's table, from the diagram in its header.
const LEGAL: [State, State][] = [
  ['starting', 'ready'],
  ['starting', 'busy'],
  ['starting', 'prewarm'],
  ['starting', 'removing'],
  ['prewarm', 'busy'],
  ['prewarm', 'removing'],
  ['ready', 'busy'],
  ['ready', 'frozen'],
  ['ready', 'removing'],
  ['busy', 'ready'],
  ['busy', 'removing'],
  ['frozen', 'busy'],
  ['frozen', 'removing'],
  ['removing', 'removed'],
];

const isLegal = (from: State, to: State) => LEGAL.some(([f, t]) => f === from && t === to);
const ILLEGAL: [State, State][] = STATES.flatMap((from) => STATES.filter((to) => !isLegal(from, to)).map((to): [State, State] => [from, to]));

describe('legal moves', () => {
  it.each(LEGAL)('%s → %s is allowed', (from, to) => {
    expect(canMove(from, to)).toBe(true);
    expect(() => assertMove(from, to)).not.toThrow();
  });
});

describe('illegal moves', () => {
  it('covers every pair that is not a legal move', () => {
    expect(ILLEGAL).toHaveLength(STATES.length * STATES.length - LEGAL.length);
  });

  it.each(ILLEGAL)('%s → %s throws IllegalTransition', (from, to) => {
    expect(canMove(from, to)).toBe(false);
    let caught: unknown;
    try {
      assertMove(from, to);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(IllegalTransition);
    expect(caught).toBeInstanceOf(Error);
    const e = caught as IllegalTransition;
    expect(e.message).toBe(`invalid state transition from ${from} to ${to}`);
    expect(e.name).toBe('IllegalTransition');
    expect(e.from).toBe(from);
    expect(e.to).toBe(to);
  });

  // The moves a careless pool would make; named so a regression reads plainly.
  it.each<[State, State]>([
    ['frozen', 'ready'], // a frozen container must be thawed by a call, not silently made ready
    ['busy', 'frozen'], // never freeze a container that is running a call
    ['prewarm', 'ready'], // a stem cell becomes busy with its first call
    ['ready', 'prewarm'], // a specialised container never becomes a stem again
    ['busy', 'busy'],
    ['ready', 'ready'],
    ['removing', 'ready'],
    ['removing', 'busy'],
    ['starting', 'frozen'],
    ['ready', 'starting'],
    ['starting', 'removed'], // removal always passes through removing
    ['busy', 'removed'],
  ])('%s → %s is rejected', (from, to) => {
    expect(() => assertMove(from, to)).toThrow(new IllegalTransition(from, to));
    expect(() => assertMove(from, to)).toThrow(`invalid state transition from ${from} to ${to}`);
  });
});

describe('removed', () => {
  it.each(STATES)('is terminal: removed → %s throws', (to) => {
    expect(canMove('removed', to)).toBe(false);
    expect(() => assertMove('removed', to)).toThrow(IllegalTransition);
  });

  it('is reachable from every state but itself, through removing', () => {
    for (const s of STATES.filter((s) => s !== 'removing' && s !== 'removed')) expect(canMove(s, 'removing')).toBe(true);
    expect(canMove('removing', 'removed')).toBe(true);
  });
});

describe('IDLE', () => {
  it('is exactly the states that hold no call and can be evicted', () => {
    expect([...IDLE].sort()).toEqual(['frozen', 'prewarm', 'ready']);
  });
});
