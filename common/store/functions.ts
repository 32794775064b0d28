// The function registry: one record per namespace/name with its version history, and the code
// packages themselves as content-addressed blobs, so any invoker on any host can fetch them.
import { Redis } from 'ioredis';
import { luaScript } from '../redis';
import { DEPLOYED_CHANNEL, keys } from '../redis-keys';
import { FunctionRecord, Manifest } from '../types';

const KEEP_VERSIONS = 20;

// KEYS: record, the namespace's index. ARGV: the record as read ('' for none), the new record,
// the function's name. Writes and indexes the new record only if the stored one is unchanged.
const REPLACE_IF = `
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1`;
const replaceIf = luaScript(REPLACE_IF);

export class FunctionStore {
  constructor(private readonly redis: Redis) {}

  async get(namespace: string, name: string): Promise<FunctionRecord | null> {
    const s = await this.redis.get(keys.fn(namespace, name));
    return s ? (JSON.parse(s) as FunctionRecord) : null;
  }

  async list(namespace: string): Promise<FunctionRecord[]> {
    const names = (await this.redis.smembers(keys.fnIndex(namespace))).sort();
    if (names.length === 0) return [];
    const values = await this.redis.mget(names.map((n) => keys.fn(namespace, n)));
    return values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as FunctionRecord);
  }

  /**
   * Deploys a package. The same bytes as the current version change nothing; otherwise a new
   * version is recorded. The record is replaced only if it is still the one read (a Lua
   * compare-and-set): concurrent deploys of one function retry, never clash. (WATCH would not
   * do: it belongs to a connection, and this one is shared by every request.)
   */
  async deploy(namespace: string, config: Manifest, digest: string, code: Buffer): Promise<FunctionRecord> {
    await this.redis.set(keys.blob(digest), code, 'NX');
    const key = keys.fn(namespace, config.name);
    for (;;) {
      const s = await this.redis.get(key);
      const cur = s ? (JSON.parse(s) as FunctionRecord) : null;
      if (cur && cur.digest === digest) return cur;
      const now = Date.now();
      const version = (cur?.version ?? 0) + 1;
      const next: FunctionRecord = {
        namespace,
        name: config.name,
        version,
        digest,
        config,
        createdAt: cur?.createdAt ?? now,
        updatedAt: now,
        versions: [...(cur?.versions ?? []), { version, digest, deployedAt: now }].slice(-KEEP_VERSIONS),
      };
      if ((await replaceIf(this.redis, 2, key, keys.fnIndex(namespace), s ?? '', JSON.stringify(next), config.name)) === 1) {
        await this.redis.publish(DEPLOYED_CHANNEL, digest);
        return next;
      }
    }
  }

  async delete(namespace: string, name: string): Promise<boolean> {
    const [[, n]] = (await this.redis.multi().del(keys.fn(namespace, name)).srem(keys.fnIndex(namespace), name).exec()) as [Error | null, number][];
    return n === 1;
  }

  async code(digest: string): Promise<Buffer | null> {
    return this.redis.getBuffer(keys.blob(digest));
  }
}
