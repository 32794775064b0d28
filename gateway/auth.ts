// Authentication: a Bearer API key maps to one namespace; the admin key acts in any namespace
// (choose it with ?namespace=NAME; its own is 'default'). Keys are looked up by their hash.
import { Context, Next } from 'koa';
import { KilnError, badRequest } from '../common/errors';
import { ApiKeyStore, Principal } from '../common/store/apikeys';
import { NAME_RE } from '../common/types';

export const ADMIN_NAMESPACE = 'default';

// Known keys are remembered briefly, saving a Redis round trip per call. Keys cannot be revoked
// through the API yet; when they can, this TTL bounds how long a revoked key keeps working.
const CACHE_TTL_MS = 10_000;
const CACHE_MAX = 10_000;

export function authenticate(keys: ApiKeyStore) {
  const cache = new Map<string, { principal: Principal; until: number }>();
  const lookup = async (key: string): Promise<Principal | null> => {
    const hit = cache.get(key);
    if (hit && hit.until > Date.now()) return hit.principal;
    const principal = await keys.lookup(key);
    if (cache.size >= CACHE_MAX) cache.clear();
    if (principal) cache.set(key, { principal, until: Date.now() + CACHE_TTL_MS });
    return principal;
  };
  return async (ctx: Context, next: Next) => {
    const m = /^Bearer\s+(\S+)$/i.exec(ctx.get('authorization'));
    const principal = m ? await lookup(m[1]) : null;
    if (!principal) throw new KilnError('unauthorized', m ? 'the API key is not valid' : 'missing Authorization: Bearer <api key>');
    ctx.state.principal = principal;
    await next();
  };
}

/** The namespace a request acts in. */
export function namespaceOf(ctx: Context): string {
  const p = ctx.state.principal as Principal;
  const asked = ctx.query.namespace;
  if (asked === undefined || asked === p.namespace) return p.namespace;
  if (typeof asked !== 'string' || !NAME_RE.test(asked)) throw badRequest('invalid namespace name');
  if (!p.admin) throw new KilnError('forbidden', `this key belongs to namespace '${p.namespace}'`);
  return asked;
}

export function requireAdmin(ctx: Context): void {
  if (!(ctx.state.principal as Principal).admin) throw new KilnError('forbidden', 'this needs the admin key');
}
