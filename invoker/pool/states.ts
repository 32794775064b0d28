// A container's life as named states, as in OpenWhisk's ContainerProxy and runc's
// state_linux.go. Every move goes through transition(), which throws on an illegal one.
//
//   starting ──▶ ready ⇄ busy        ready ──(pause grace)──▶ frozen ──(call)──▶ busy
//      │                             prewarm (a frozen stem cell) ──(first call)──▶ busy
//      └──▶ prewarm                  any state ──▶ removing ──▶ removed
export type State = 'starting' | 'prewarm' | 'ready' | 'busy' | 'frozen' | 'removing' | 'removed';

const MOVES: Record<State, State[]> = {
  starting: ['ready', 'busy', 'prewarm', 'removing'],
  prewarm: ['busy', 'removing'],
  ready: ['busy', 'frozen', 'removing'],
  busy: ['ready', 'removing'],
  frozen: ['busy', 'removing'],
  removing: ['removed'],
  removed: [],
};

export class IllegalTransition extends Error {
  constructor(readonly from: State, readonly to: State) {
    super(`invalid state transition from ${from} to ${to}`);
    this.name = 'IllegalTransition';
  }
}

export function canMove(from: State, to: State): boolean {
  return MOVES[from].includes(to);
}

export function assertMove(from: State, to: State): void {
  if (!canMove(from, to)) throw new IllegalTransition(from, to);
}

/** States in which a container holds no call and may be evicted. */
export const IDLE: readonly State[] = ['ready', 'frozen', 'prewarm'];
