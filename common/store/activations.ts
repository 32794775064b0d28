// Activation records and their logs, in Redis with a TTL. A record becomes final exactly once:
// the Lua script refuses a second final write, so a retried or duplicated job can never give
// an activation two results. Final records are published for gateways waiting on sync calls.
import { Redis } from 'ioredis';
import { luaScript } from '../redis';
import { DONE_CHANNEL, keys } from '../redis-keys';
import { ActivationRecord, FINAL_STATUSES } from '../types';

const KEEP_PER_LIST = 1000;

// The final statuses, as a Lua set the scripts below start with.
const FINAL = `local FINAL = {${FINAL_STATUSES.map((s) => `${s} = true`).join(', ')}}`;

// KEYS: record, logs, usage, in-flight. ARGV: record json, logs json, ttl, channel, usage member,
// endedAt, activation id. The usage entry is written with the final record, in the same
// script. No logs, no logs key (read as none).
const FINISH = `${FINAL}
local cur = redis.call('GET', KEYS[1])
if cur and FINAL[cjson.decode(cur)['status']] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
if ARGV[2] ~= '[]' then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[6]) - tonumber(ARGV[3]) * 1000)
redis.call('ZREM', KEYS[4], ARGV[7])
redis.call('PUBLISH', ARGV[4], ARGV[7] .. ' ' .. ARGV[1])
return 1`;

// KEYS: record, the function's list, the namespace's list. ARGV: queued record json, ttl,
// queuedAt, activation id, list length kept. Writes the record unless one exists (an invoker
// that took the job first wrote it) and lists the activation either way; 1 if it wrote it.
const CREATE = `
local created = redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX')
for i = 2, 3 do
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[4])
  if redis.call('ZCARD', KEYS[i]) > tonumber(ARGV[5]) then redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -tonumber(ARGV[5]) - 1) end
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
if created then return 1 end
return 0`;


// KEYS: record. ARGV: running record json (without attempt), ttl, least attempt, '1' for a late
// mark. Marks an activation running unless it is final; returns its attempt
// number (the least given, or more when an earlier delivery had got as far as running), or 0
// when it is already final. A late mark (a first delivery marked after it started) finding the
// record running changes nothing: a later delivery marked it, and counted the attempts.
const BEGIN = `${FINAL}
local attempt = tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
if cur then
  local r = cjson.decode(cur)
  if FINAL[r['status']] then return 0 end
  if r['status'] == 'running' then
    if ARGV[4] == '1' then return tonumber(r['attempt']) or 1 end
    attempt = math.max(attempt, (tonumber(r['attempt']) or 1) + 1)
  end
end
local rec = cjson.decode(ARGV[1])
rec['attempt'] = attempt
redis.call('SET', KEYS[1], cjson.encode(rec), 'EX', ARGV[2])
return attempt`;

const create = luaScript(CREATE);
const begin = luaScript(BEGIN);
const finish = luaScript(FINISH);

export interface Usage {
  namespace: string;
  invocations: number;
  billedMs: number;
  gbSeconds: number;
  cpuMs: number;
}

/** The sum of usages, GB-seconds and CPU ms rounded as the records' are. */
export function addUsage(parts: Omit<Usage, 'namespace'>[]): Omit<Usage, 'namespace'> {
  const t = { invocations: 0, billedMs: 0, gbSeconds: 0, cpuMs: 0 };
  for (const u of parts) {
    t.invocations += u.invocations;
    t.billedMs += u.billedMs;
    t.gbSeconds += u.gbSeconds;
    t.cpuMs += u.cpuMs;
  }
  t.gbSeconds = Math.round(t.gbSeconds * 1e6) / 1e6;
  t.cpuMs = Math.round(t.cpuMs * 1000) / 1000;
  return t;
}

export class ActivationStore {
  constructor(private readonly redis: Redis, private readonly ttlSeconds: number) {}

  /**
   * Writes a new queued record and lists it; false if a record with this id exists already (an
   * invoker that took the job first wrote it: it is listed all the same).
   */
  async create(r: ActivationRecord): Promise<boolean> {
    const n = await create(
      this.redis, 3, keys.activation(r.activationId), keys.activationsByFn(r.namespace, r.function), keys.activationsByNs(r.namespace),
      JSON.stringify(r), this.ttlSeconds, r.queuedAt, r.activationId, KEEP_PER_LIST,
    );
    return n === 1;
  }

  /**
   * Marks a call as running; returns its attempt number (at least `leastAttempt`), or 0 if the
   * record is already final. `late`: the call started before this mark (see the script).
   */
  async begin(r: ActivationRecord, leastAttempt = 1, late = false): Promise<number> {
    return (await begin(this.redis, 1, keys.activation(r.activationId), JSON.stringify(r), this.ttlSeconds, leastAttempt, late ? '1' : '0')) as number;
  }

  /** Writes the final record and its logs once; returns false if it was already final. */
  async finish(r: ActivationRecord, logs: string[]): Promise<boolean> {
    const endedAt = r.endedAt ?? Date.now();
    const usage = `${r.activationId}|${r.billedMs ?? 0}|${r.memoryMB}|${r.cpuMs ?? 0}`;
    const n = await finish(
      this.redis, 4, keys.activation(r.activationId), keys.activationLogs(r.activationId), keys.usage(r.namespace), keys.inFlight(r.namespace),
      JSON.stringify(r), JSON.stringify(logs), this.ttlSeconds, DONE_CHANNEL, usage, endedAt, r.activationId,
    );
    return n === 1;
  }

  /**
   * Usage of one namespace over activations that ended in [from, to): the sums of the same
   * fields as the records. GB-seconds = billedMs/1000 x memoryMB/1024.
   */
  async usage(namespace: string, from: number, to: number): Promise<Usage> {
    const members = await this.redis.zrangebyscore(keys.usage(namespace), from, `(${to}`);
    return {
      namespace,
      ...addUsage(members.map((m) => {
        const [, billedMs, memoryMB, cpuMs] = m.split('|').map(Number);
        return { invocations: 1, billedMs, gbSeconds: (billedMs / 1000) * (memoryMB / 1024), cpuMs };
      })),
    };
  }

  async get(id: string): Promise<ActivationRecord | null> {
    const s = await this.redis.get(keys.activation(id));
    return s ? (JSON.parse(s) as ActivationRecord) : null;
  }

  async logs(id: string): Promise<string[]> {
    const s = await this.redis.get(keys.activationLogs(id));
    return s ? (JSON.parse(s) as string[]) : [];
  }

  /** Newest first, for one namespace and optionally one function. */
  async list(namespace: string, fn: string | undefined, limit: number): Promise<ActivationRecord[]> {
    const list = fn ? keys.activationsByFn(namespace, fn) : keys.activationsByNs(namespace);
    const ids = await this.redis.zrevrange(list, 0, limit - 1);
    if (ids.length === 0) return [];
    const values = await this.redis.mget(ids.map((id) => keys.activation(id)));
    return values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as ActivationRecord);
  }
}
