// The Redis key layout, in one place.
export const QUEUE_NAME = 'kiln-invocations';
export const DONE_CHANNEL = 'kiln:done';
export const DEPLOYED_CHANNEL = 'kiln:deployed'; // digests of new code, for invokers to fetch ahead

export const keys = {
  apiKeys: 'kiln:apikeys', // hash: sha256(key) -> JSON {namespace, admin}
  namespaces: 'kiln:namespaces', // set
  fn: (ns: string, name: string) => `kiln:fn:${ns}:${name}`,
  fnIndex: (ns: string) => `kiln:fns:${ns}`, // set of names
  blob: (digest: string) => `kiln:blob:${digest}`,
  activation: (id: string) => `kiln:act:${id}`,
  activationLogs: (id: string) => `kiln:logs:${id}`,
  activationsByFn: (ns: string, name: string) => `kiln:acts:${ns}:${name}`, // zset by queuedAt
  activationsByNs: (ns: string) => `kiln:acts:${ns}`, // zset by queuedAt
  usage: (ns: string) => `kiln:usage:${ns}`, // zset by endedAt: id|billedMs|memoryMB|cpuMs, untrimmed
  limits: (ns: string) => `kiln:limits:${ns}`, // hash: ratePerSecond, burst, inFlight (a namespace's own)
  rateBucket: (ns: string) => `kiln:rate:${ns}`, // hash: tokens, ts
  inFlight: (ns: string) => `kiln:inflight:${ns}`, // zset: activation id by expiry
  invokers: 'kiln:invokers', // set of invoker ids
  invoker: (id: string) => `kiln:invoker:${id}`, // the invoker's latest snapshot, with a short TTL
};
