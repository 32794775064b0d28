// API keys: each belongs to one namespace; the admin key to all. Only a sha256 of each key is
// stored, so a copy of Redis gives no usable key. Keys are 256-bit random, so a plain hash is
// enough (no password stretching needed), and lookups are by hash, not by comparing secrets.
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { keys } from '../redis-keys';

export interface Principal {
  namespace: string;
  admin: boolean;
}

export const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');
export const newApiKey = () => `kiln_${randomBytes(32).toString('base64url')}`;

export class ApiKeyStore {
  constructor(private readonly redis: Redis) {}

  async lookup(key: string): Promise<Principal | null> {
    const s = await this.redis.hget(keys.apiKeys, hashKey(key));
    return s ? (JSON.parse(s) as Principal) : null;
  }

  async add(key: string, p: Principal): Promise<void> {
    await this.redis.multi().hset(keys.apiKeys, hashKey(key), JSON.stringify(p)).sadd(keys.namespaces, p.namespace).exec();
  }

  async namespaces(): Promise<string[]> {
    return this.redis.smembers(keys.namespaces);
  }

  async hasNamespace(name: string): Promise<boolean> {
    return (await this.redis.sismember(keys.namespaces, name)) === 1;
  }

  /** Creates a namespace with a fresh key; null when the name is taken. */
  async createNamespace(name: string): Promise<string | null> {
    if ((await this.redis.sadd(keys.namespaces, name)) === 0) return null;
    const key = newApiKey();
    await this.add(key, { namespace: name, admin: false });
    return key;
  }
}
