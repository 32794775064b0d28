// The gateway's Koa app, built by a function so tests can drive app.callback() in process.
// Errors become responses in exactly one place: the first middleware.
import Router from '@koa/router';
import Koa from 'koa';
import { KilnError, STATUS_OF } from '../common/errors';
import { authenticate } from './auth';
import { Deps } from './deps';
import { activationRoutes } from './routes/activations';
import { functionRoutes } from './routes/functions';
import { invokeRoutes } from './routes/invoke';
import { namespaceRoutes, publicRoutes } from './routes/system';
import { usageRoutes } from './routes/usage';
import { webRoutes } from './routes/web';

export function createApp(d: Deps): Koa {
  const app = new Koa();
  app.use(async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw new KilnError('not_found', `no route for ${ctx.method} ${ctx.path}`);
    } catch (err) {
      const e = toKilnError(err);
      if (e.code === 'system_error' || e.code === 'unavailable') d.log.error({ err, path: ctx.path }, 'request failed');
      ctx.status = e.status;
      ctx.body = { error: { code: e.code, message: e.message } };
    }
  });
  app.use(d.metrics.middleware);

  const open = new Router();
  publicRoutes(open, d);
  webRoutes(open, d);
  app.use(open.routes());

  const api = new Router();
  api.use('/v1', authenticate(d.apiKeys));
  functionRoutes(api, d);
  invokeRoutes(api, d);
  activationRoutes(api, d);
  namespaceRoutes(api, d);
  usageRoutes(api, d);
  app.use(api.routes());
  return app;
}

function toKilnError(err: unknown): KilnError {
  if (err instanceof KilnError) return err;
  const e = err as { status?: number; expose?: boolean; message?: string; name?: string };
  if (e?.name === 'MaxRetriesPerRequestError' || /Connection is closed|ECONNREFUSED|ENOENT|Stream isn't writeable|Reached the max retries/.test(String(e?.message))) {
    return new KilnError('unavailable', 'the queue (Redis) is not reachable; try again');
  }
  if (typeof e?.status === 'number' && e.status < 500 && e.expose) {
    const code = (Object.keys(STATUS_OF) as (keyof typeof STATUS_OF)[]).find((k) => STATUS_OF[k] === e.status) ?? 'bad_request';
    return new KilnError(code, e.message ?? 'bad request');
  }
  return new KilnError('system_error', 'internal error');
}
