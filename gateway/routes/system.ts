// Namespaces (admin), health and metrics.
import Router from '@koa/router';
import { Context } from 'koa';
import { KilnError, badRequest } from '../../common/errors';
import { NAME_RE } from '../../common/types';
import { requireAdmin } from '../auth';
import { readJson } from '../body';
import { Deps } from '../deps';

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
