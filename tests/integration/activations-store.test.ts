// The activation record's life in a real redis-server: queued, running (with its attempt
// number), final exactly once.
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { createLogger } from '../../common/log';
import { ActivationStore } from '../../common/store/activations';
import { ActivationRecord } from '../../common/types';
import { EmbeddedRedis } from '../../platform/redis';

let dir: string;
let server: EmbeddedRedis;
let redis: Redis;
let store: ActivationStore;

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-store-'));
  server = new EmbeddedRedis(dir, createLogger('test', 'silent'));
  await server.start();
  redis = new Redis({ path: server.socket });
  store = new ActivationStore(redis, 60);
});

afterAll(async () => {
  await redis.quit();
  await server.stop();
  await fsp.rm(dir, { recursive: true, force: true });
});

let n = 0;
function record(): ActivationRecord {
  const id = String(++n).padStart(32, '0');
  return { activationId: id, namespace: 'ns', function: 'f', version: 1, status: 'queued', queuedAt: Date.now(), memoryMB: 128 };
}

it('a queued record is marked running with attempt 1, or the least attempt the invoker gives (stalls)', async () => {
  const a = record();
  await store.create(a);
  expect(await store.begin({ ...a, status: 'running' })).toBe(1);
  expect(await store.get(a.activationId)).toMatchObject({ status: 'running', attempt: 1 });

  const b = record();
  await store.create(b);
  expect(await store.begin({ ...b, status: 'running' }, 3)).toBe(3);
});

it('a record already running was delivered before: the next delivery gets the next attempt', async () => {
  const a = record();
  await store.create(a);
  await store.begin({ ...a, status: 'running' });
  expect(await store.begin({ ...a, status: 'running' })).toBe(2);
  expect(await store.begin({ ...a, status: 'running' }, 2)).toBe(3);
  expect(await store.begin({ ...a, status: 'running' }, 7)).toBe(7);
  expect((await store.get(a.activationId))?.attempt).toBe(7);
});

it('a late mark of a first delivery finding the record running (a later delivery marked it) changes nothing', async () => {
  const a = record();
  await store.create(a);
  expect(await store.begin({ ...a, status: 'running', invoker: 'second' }, 2)).toBe(2);
  expect(await store.begin({ ...a, status: 'running', invoker: 'first' }, 1, true)).toBe(2);
  expect(await store.get(a.activationId)).toMatchObject({ status: 'running', attempt: 2, invoker: 'second' });
  const b = record();
  await store.create(b);
  expect(await store.begin({ ...b, status: 'running' }, 1, true)).toBe(1); // queued: marked as usual
});

it('a final record is written once, and never marked running again', async () => {
  const a = record();
  await store.create(a);
  const done = { ...a, status: 'success' as const, endedAt: Date.now(), result: 1, billedMs: 1 };
  expect(await store.finish(done, ['one'])).toBe(true);
  expect(await store.finish({ ...done, result: 2 }, ['two'])).toBe(false);
  expect(await store.begin({ ...a, status: 'running' })).toBe(0);
  expect(await store.get(a.activationId)).toMatchObject({ status: 'success', result: 1 });
  expect(await store.logs(a.activationId)).toEqual(['one']);
});
