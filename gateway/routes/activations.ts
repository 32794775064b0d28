// Activation records and their logs. A namespace sees only its own records (admin: all).
import Router from '@koa/router';
import { Context } from 'koa';
import { badRequest, notFound } from '../../common/errors';
import { Principal } from '../../common/store/apikeys';
import { ACTIVATION_ID_RE, ActivationRecord } from '../../common/types';
import { namespaceOf } from '../auth';
import { Deps } from '../deps';
import { validName } from './functions';

export function activationRoutes(router: Router, d: Deps): void {
  const load = async (ctx: Context): Promise<ActivationRecord> => {
    const id = ctx.params.id;
    const r = ACTIVATION_ID_RE.test(id) ? await d.activations.get(id) : null;
    const p = ctx.state.principal as Principal;
    // Another namespace's record is reported as absent, not forbidden: ids leak nothing.
    if (!r || (!p.admin && r.namespace !== p.namespace)) throw notFound(`no activation '${String(id).slice(0, 64)}'`);
    return r;
  };

  router.get('/v1/activations', async (ctx) => {
    const ns = namespaceOf(ctx);
    const fn = typeof ctx.query.function === 'string' ? validName(ctx.query.function) : undefined;
    const limit = ctx.query.limit === undefined ? 20 : Number(ctx.query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 200) throw badRequest('limit must be an integer from 1 to 200');
    ctx.body = { activations: await d.activations.list(ns, fn, limit) };
  });

  router.get('/v1/activations/:id', async (ctx) => {
    ctx.body = await load(ctx);
  });

  router.get('/v1/activations/:id/logs', async (ctx) => {
    const r = await load(ctx);
    ctx.body = { activationId: r.activationId, logs: await d.activations.logs(r.activationId) };
  });
}
