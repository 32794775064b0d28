// Per-namespace admission: a rate limit (token bucket) and a limit on invocations in flight,
// checked together in one Lua script so concurrent gateways share them exactly. An in-flight
// entry is removed when the activation's final record is written (common/store/activations.ts)
// and expires on its own after a deadline, so a crash never leaks a slot for long.
import { Redis } from 'ioredis';
import { KilnError } from '../common/errors';
import { luaScript } from '../common/redis';
import { keys } from '../common/redis-keys';

// KEYS: bucket, in-flight zset. ARGV: rate/s, burst, in-flight limit, now ms, id, expiry ms.
const ADMIT = `
local now = tonumber(ARGV[4])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
if rate > 0 then
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  local tokens = tonumber(b[1]) or burst
  local ts = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  if tokens < 1 then return -1 end
  redis.call('HSET', KEYS[1], 'tokens', tokens - 1, 'ts', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
end
local limit = tonumber(ARGV[3])
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= limit then return -2 end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[5])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]))
end
return 1`;

const admit = luaScript(ADMIT);

export interface Limits {
  ratePerSecond: number; // 0: no rate limit
  burst: number;
  inFlight: number; // 0: no limit
}

export class Admission {
  constructor(private readonly redis: Redis, private readonly limits: Limits) {}

  /** Takes a slot for one invocation or throws rate_limited (429). */
  async admit(namespace: string, activationId: string, timeoutMs: number): Promise<void> {
    const { ratePerSecond, burst, inFlight } = this.limits;
    if (ratePerSecond === 0 && inFlight === 0) return;
    const r = await admit(
      this.redis, 2, keys.rateBucket(namespace), keys.inFlight(namespace),
      ratePerSecond, Math.max(1, burst), inFlight, Date.now(), activationId, timeoutMs + 5 * 60_000,
    );
    if (r === -1) throw new KilnError('rate_limited', `namespace '${namespace}' is over its rate limit of ${ratePerSecond} invocations per second`);
    if (r === -2) throw new KilnError('rate_limited', `namespace '${namespace}' has ${inFlight} invocations in flight, its limit`);
  }

  /** Gives the slot back when an invocation was not queued after all. */
  async release(namespace: string, activationId: string): Promise<void> {
    await this.redis.zrem(keys.inFlight(namespace), activationId);
  }
}
