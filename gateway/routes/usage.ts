// Usage for billing (per namespace; the admin key sees all) and the containers of every live
// invoker (`kiln ps`, `kiln stats`).
import Router from '@koa/router';
import { badRequest } from '../../common/errors';
import { Principal } from '../../common/store/apikeys';
import { addUsage } from '../../common/store/activations';
import { ADMIN_NAMESPACE, namespaceOf } from '../auth';
import { Deps } from '../deps';

const DAY_MS = 24 * 3600 * 1000;

function parseTime(v: unknown, name: string, fallback: number): number {
  if (v === undefined || v === '') return fallback;
  if (typeof v !== 'string') throw badRequest(`${name} must be given once`);
  const t = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(t)) throw badRequest(`${name} must be epoch milliseconds or an ISO 8601 date`);
  return t;
}

export function usageRoutes(router: Router, d: Deps): void {
  router.get('/v1/usage', async (ctx) => {
    const to = parseTime(ctx.query.to, 'to', Date.now());
    const from = parseTime(ctx.query.from, 'from', to - DAY_MS);
    if (from > to) throw badRequest('from must not be after to');
    const p = ctx.state.principal as Principal;
    const all = p.admin && ctx.query.namespace === undefined;
    const names = all ? [...new Set([ADMIN_NAMESPACE, ...(await d.apiKeys.namespaces())])].sort() : [namespaceOf(ctx)];
    const namespaces = await Promise.all(names.map((n) => d.activations.usage(n, from, to)));
    ctx.body = { from, to, namespaces, total: addUsage(namespaces) };
  });

  router.get('/v1/containers', async (ctx) => {
    const p = ctx.state.principal as Principal;
    const ns = namespaceOf(ctx);
    const all = p.admin && ctx.query.namespace === undefined;
    const invokers = await d.invokers.live();
    ctx.body = {
      invokers: invokers.map(({ containers, ...rest }) => ({ ...rest, containers: containers.length })),
      containers: invokers.flatMap((i) =>
        i.containers.filter((c) => all || c.namespace === ns).map((c) => ({ ...c, invoker: i.id, sampledAt: i.at })),
      ),
    };
  });
}
