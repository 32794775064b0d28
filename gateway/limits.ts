// Admission of an invocation: the function looked up, then a per-namespace rate limit (token
// bucket) and a limit on invocations in flight, all in one Lua script: one round trip, and
// concurrent gateways share the limits exactly. Each limit is the gateway's default unless the
// admin set the namespace its own (kept in Redis, read by the same script). An in-flight entry is removed when the
// activation's final record is written (common/store/activations.ts) and expires on its own
// after a deadline, so a crash never leaks a slot for long.
import { Redis } from 'ioredis';
import { KilnError } from '../common/errors';
import { luaScript } from '../common/redis';
import { keys } from '../common/redis-keys';
import { FunctionRecord } from '../common/types';

// KEYS: function, bucket, in-flight zset, the namespace's own limits. ARGV: default rate/s,
// burst, in-flight limit, now ms, id, expiry ms, '1' for web calls only. Returns {1, function
// json}, {0} for no such function (or one not exposed on the web, for a web call; no slot
// taken), or {-1, rate} / {-2, limit} when over the rate / in-flight limit.
const ADMIT = `
local fn = redis.call('GET', KEYS[1])
if not fn then return {0} end
if ARGV[7] == '1' and cjson.decode(fn)['config']['web'] ~= true then return {0} end
local own = redis.call('HMGET', KEYS[4], 'ratePerSecond', 'burst', 'inFlight')
local now = tonumber(ARGV[4])
local rate = tonumber(own[1]) or tonumber(ARGV[1])
local burst = math.max(1, tonumber(own[2]) or tonumber(ARGV[2]))
if rate > 0 then
  local b = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
  local tokens = tonumber(b[1]) or burst
  local ts = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  if tokens < 1 then return {-1, rate} end
  redis.call('HSET', KEYS[2], 'tokens', tokens - 1, 'ts', now)
  redis.call('PEXPIRE', KEYS[2], math.ceil(burst / rate * 1000) + 1000)
end
local limit = tonumber(own[3]) or tonumber(ARGV[3])
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= limit then return {-2, limit} end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[5])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[6]))
end
return {1, fn}`;

const admit = luaScript(ADMIT);

export interface Limits {
  ratePerSecond: number; // 0: no rate limit
  burst: number;
  inFlight: number; // 0: no limit
}

export const LIMIT_NAMES = ['ratePerSecond', 'burst', 'inFlight'] as const;

export class Admission {
  constructor(private readonly redis: Redis, private readonly defaults: Limits) {}

  /**
   * Looks the function up and takes a slot for one invocation of it: null (and no slot) when
   * there is no such function, or `onlyWeb` and it is not a web function; throws rate_limited
   * (429) when over a limit.
   */
  async admit(namespace: string, name: string, activationId: string, timeoutMs: number, onlyWeb = false): Promise<FunctionRecord | null> {
    const { ratePerSecond, burst, inFlight } = this.defaults;
    const [r, v] = (await admit(
      this.redis, 4, keys.fn(namespace, name), keys.rateBucket(namespace), keys.inFlight(namespace), keys.limits(namespace),
      ratePerSecond, burst, inFlight, Date.now(), activationId, timeoutMs + 5 * 60_000, onlyWeb ? '1' : '0',
    )) as [number, (string | number)?];
    if (r === -1) throw new KilnError('rate_limited', `namespace '${namespace}' is over its rate limit of ${v} invocations per second`);
    if (r === -2) throw new KilnError('rate_limited', `namespace '${namespace}' has ${v} invocations in flight, its limit`);
    return r === 1 ? (JSON.parse(v as string) as FunctionRecord) : null;
  }

  /** Gives the slot back when an invocation was not queued after all. */
  async release(namespace: string, activationId: string): Promise<void> {
    await this.redis.zrem(keys.inFlight(namespace), activationId);
  }

  /** A namespace's limits: its own where the admin set them, the defaults otherwise. */
  async limitsOf(namespace: string): Promise<{ limits: Limits; own: Partial<Limits> }> {
    const values = await this.redis.hmget(keys.limits(namespace), ...LIMIT_NAMES);
    const own: Partial<Limits> = {};
    LIMIT_NAMES.forEach((k, i) => values[i] !== null && (own[k] = Number(values[i])));
    return { limits: { ...this.defaults, ...own }, own };
  }

  /** Sets a namespace's own limits; a null goes back to the default. */
  async setLimits(namespace: string, changes: { [K in keyof Limits]?: number | null }): Promise<void> {
    const set = Object.entries(changes).filter(([, v]) => v !== null && v !== undefined);
    const unset = Object.entries(changes).filter(([, v]) => v === null).map(([k]) => k);
    const m = this.redis.multi();
    if (set.length) m.hset(keys.limits(namespace), Object.fromEntries(set));
    if (unset.length) m.hdel(keys.limits(namespace), ...unset);
    await m.exec();
  }
}
