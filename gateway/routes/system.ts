// Namespaces and their limits (admin), health and metrics.
import Router from '@koa/router';
import { Context } from 'koa';
import { z } from 'zod';
import { KilnError, badRequest, notFound } from '../../common/errors';
import { Principal } from '../../common/store/apikeys';
import { NAME_RE } from '../../common/types';
import { requireAdmin } from '../auth';
import { readJson } from '../body';
import { Deps } from '../deps';
import { LIMIT_NAMES } from '../limits';

// A limit set to null goes back to the gateway's default; 0 turns rate and in-flight limits off.
const limit = (least: number) => z.number().int().min(least).max(1_000_000).nullable().optional();
const limitChanges = z.strictObject({ ratePerSecond: limit(0), burst: limit(1), inFlight: limit(0) });

export function namespaceRoutes(router: Router, d: Deps): void {
  router.post('/v1/namespaces', async (ctx) => {
    requireAdmin(ctx);
    const body = (await readJson(ctx, 64 * 1024)) as { name?: unknown };
    const name = body && typeof body === 'object' ? body.name : undefined;
    if (typeof name !== 'string' || !NAME_RE.test(name)) throw badRequest('body must be {"name": NAME} with lowercase letters, digits, - and _');
    const apiKey = await d.apiKeys.createNamespace(name);
    if (!apiKey) throw new KilnError('conflict', `namespace '${name}' already exists`);
    ctx.status = 201;
    ctx.body = { name, apiKey };
  });

  // A namespace's admission limits: any namespace's for the admin, its own for its key.
  const limitsOf = async (ctx: Context) => {
    const name = ctx.params.name;
    const p = ctx.state.principal as Principal;
    if (!p.admin && p.namespace !== name) throw new KilnError('forbidden', `this key belongs to namespace '${p.namespace}'`);
    if (!NAME_RE.test(name) || !(await d.apiKeys.hasNamespace(name))) throw notFound(`no namespace '${name}'`);
    return name;
  };
  const show = async (ctx: Context, name: string) => {
    const { limits, own } = await d.admission.limitsOf(name);
    ctx.body = { namespace: name, ...limits, own: LIMIT_NAMES.filter((k) => own[k] !== undefined) };
  };
  router.get('/v1/namespaces/:name/limits', async (ctx) => show(ctx, await limitsOf(ctx)));
  router.put('/v1/namespaces/:name/limits', async (ctx) => {
    requireAdmin(ctx);
    const name = await limitsOf(ctx);
    const parsed = limitChanges.safeParse(await readJson(ctx, 64 * 1024));
    if (!parsed.success) {
      throw badRequest(`body must be {"ratePerSecond"?, "burst"?, "inFlight"?}, each a whole number up to 1000000 (burst at least 1), or null for the default: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`);
    }
    await d.admission.setLimits(name, parsed.data);
    await show(ctx, name);
  });
}

export function publicRoutes(router: Router, d: Deps): void {
  router.get('/healthz', async (ctx: Context) => {
    try {
      await d.redis.ping();
      ctx.body = { ok: true };
    } catch {
      throw new KilnError('unavailable', 'Redis is not reachable');
    }
  });
  router.get('/metrics', async (ctx: Context) => {
    ctx.type = d.registry.contentType;
    ctx.body = await d.registry.metrics();
  });
}
