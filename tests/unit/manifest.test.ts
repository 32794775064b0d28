// common/types.ts manifestSchema: kiln.json as the contract describes it.
import { manifestSchema } from '../../common/types';

const minimal = { name: 'hello', runtime: 'node20', handler: 'index.handler' };
const ok = (m: unknown) => manifestSchema.safeParse(m).success;

describe('manifestSchema', () => {
  it('fills in the documented defaults', () => {
    expect(manifestSchema.parse(minimal)).toEqual({
      ...minimal, memoryMB: 256, timeoutMs: 60000, concurrency: 1, env: {}, web: false,
    });
  });

  it('accepts the contract example as is', () => {
    const full = { name: 'hello', runtime: 'node20', handler: 'index.handler', memoryMB: 256, timeoutMs: 60000, concurrency: 1, env: {}, web: false };
    expect(manifestSchema.parse(full)).toEqual(full);
  });

  it('keeps given values over defaults', () => {
    const m = manifestSchema.parse({ ...minimal, memoryMB: 512, timeoutMs: 1000, concurrency: 4, env: { A_B: 'x' }, web: true });
    expect(m).toMatchObject({ memoryMB: 512, timeoutMs: 1000, concurrency: 4, env: { A_B: 'x' }, web: true });
  });

  it.each(['hello', 'a', 'fn-1', 'my_fn', '0abc', 'a'.repeat(63)])('accepts name %s', (name) => {
    expect(ok({ ...minimal, name })).toBe(true);
  });

  it.each(['', 'Hello', '-x', '_x', 'a b', 'a/b', '../x', 'a.b', 'é', 'a'.repeat(64)])('refuses name %j', (name) => {
    expect(ok({ ...minimal, name })).toBe(false);
  });

  it('requires name, runtime and handler', () => {
    for (const k of ['name', 'runtime', 'handler'] as const) {
      const m: Record<string, unknown> = { ...minimal };
      delete m[k];
      const r = manifestSchema.safeParse(m);
      expect(r.success).toBe(false);
      expect(r.error!.issues.map((i) => i.path.join('.'))).toContain(k);
    }
  });

  it.each(['python3', 'node18', 'Node20', ''])('refuses unknown runtime %j', (runtime) => {
    expect(ok({ ...minimal, runtime })).toBe(false);
  });

  it('refuses unknown keys, naming them', () => {
    const r = manifestSchema.safeParse({ ...minimal, memory: 128 });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error!.issues)).toContain('memory');
    expect(ok({ ...minimal, timeout: 5 })).toBe(false);
  });

  it.each([
    [64, true], [4096, true], [128, true],
    [63, false], [4097, false], [0, false], [-256, false], [256.5, false], ['256', false],
  ])('memoryMB %j accepted: %s', (memoryMB, accepted) => {
    expect(ok({ ...minimal, memoryMB })).toBe(accepted);
  });

  it('bounds timeout and concurrency', () => {
    expect(ok({ ...minimal, timeoutMs: 99 })).toBe(false);
    expect(ok({ ...minimal, timeoutMs: 15 * 60_000 })).toBe(true);
    expect(ok({ ...minimal, timeoutMs: 15 * 60_000 + 1 })).toBe(false);
    expect(ok({ ...minimal, concurrency: 0 })).toBe(false);
    expect(ok({ ...minimal, concurrency: 1.5 })).toBe(false);
  });

  it.each(['index.handler', 'src/app.main', 'lib/index.js.handler', 'index.$h', 'a-b.fn_1'])('accepts handler %s', (handler) => {
    expect(ok({ ...minimal, handler })).toBe(true);
  });

  it.each(['index', 'handler', '.handler', 'index.', 'index.1abc', 'index.han-dler', 'in dex.handler', ''])('refuses handler %j', (handler) => {
    expect(ok({ ...minimal, handler })).toBe(false);
  });

  it('only takes string env values with valid variable names', () => {
    expect(ok({ ...minimal, env: { GOOD_1: 'v' } })).toBe(true);
    expect(ok({ ...minimal, env: { '1BAD': 'v' } })).toBe(false);
    expect(ok({ ...minimal, env: { 'A=B': 'v' } })).toBe(false);
    expect(ok({ ...minimal, env: { A: 1 } })).toBe(false);
  });

  it('refuses a non-boolean web flag', () => {
    expect(ok({ ...minimal, web: 'yes' })).toBe(false);
  });
});
