// Redis connections. With REDIS_URL unset the platform runs its own redis-server on a unix
// socket in the state dir (no port to collide with), and every component connects there.
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import type { ConnectionOptions } from 'bullmq';
import { Redis, RedisOptions } from 'ioredis';
import { Config, statePaths } from './config';

export function embeddedRedisSocket(stateDir: string): string {
  return path.join(statePaths(stateDir).redis, 'redis.sock');
}

export function redisOptions(config: Pick<Config, 'REDIS_URL' | 'KILN_STATE_DIR'>): RedisOptions {
  // maxRetriesPerRequest null: BullMQ workers need it; commands wait across reconnects.
  const common: RedisOptions = { maxRetriesPerRequest: null, enableReadyCheck: true };
  if (!config.REDIS_URL) return { ...common, path: embeddedRedisSocket(config.KILN_STATE_DIR) };
  const u = new URL(config.REDIS_URL);
  return {
    ...common,
    host: u.hostname,
    port: Number(u.port || 6379),
    username: u.username || undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    tls: u.protocol === 'rediss:' ? {} : undefined,
  };
}

export function connect(config: Pick<Config, 'REDIS_URL' | 'KILN_STATE_DIR'>, extra: RedisOptions = {}): Redis {
  return new Redis({ ...redisOptions(config), ...extra });
}

/** The same options, typed for BullMQ's Queue and Worker. */
export function bullConnection(config: Pick<Config, 'REDIS_URL' | 'KILN_STATE_DIR'>): ConnectionOptions {
  return redisOptions(config) as ConnectionOptions;
}

/**
 * A connection that fails commands at once while Redis is unreachable, instead of queueing them:
 * what a request path needs to answer 503 quickly. Resolves once the first connection is up.
 */
export async function connectFailFast(config: Pick<Config, 'REDIS_URL' | 'KILN_STATE_DIR'>): Promise<Redis> {
  const redis = connect(config, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined); // reconnects on its own; failed commands are reported by callers
  await new Promise<void>((resolve) => redis.once('ready', () => resolve()));
  return redis;
}

/** BullMQ connection options for a producer that fails fast too. */
export function bullConnectionFailFast(config: Pick<Config, 'REDIS_URL' | 'KILN_STATE_DIR'>): ConnectionOptions {
  return { ...redisOptions(config), enableOfflineQueue: false, maxRetriesPerRequest: 1 } as ConnectionOptions;
}

/**
 * A Lua script called by its SHA1 (EVALSHA), so its text is sent once per server, not with
 * every call; after a Redis restart (NOSCRIPT) it is sent again.
 */
export function luaScript(source: string) {
  const sha = createHash('sha1').update(source).digest('hex');
  return async (redis: Redis, numKeys: number, ...args: (string | number)[]): Promise<unknown> => {
    try {
      return await redis.evalsha(sha, numKeys, ...args);
    } catch (e) {
      if (!/NOSCRIPT/.test(String(e))) throw e;
      return redis.eval(source, numKeys, ...args);
    }
  };
}
