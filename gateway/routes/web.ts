// Web calls: /web/:namespace/:name/* calls a function deployed with "web": true, without an
// API key, passing the HTTP request as the event and turning the result into the response.
import Router from '@koa/router';
import { Context } from 'koa';
import { badRequest } from '../../common/errors';
import { NAME_RE } from '../../common/types';
import { readRaw } from '../body';
import { Deps } from '../deps';
import { respond, writeJson } from './invoke';
import { validName } from './functions';

const TEXT_TYPES = /^(text\/|application\/(json|x-www-form-urlencoded|xml|javascript))/;

export function webRoutes(router: Router, d: Deps): void {
  router.all('/web/:namespace/:name{/*rest}', async (ctx) => {
    const ns = ctx.params.namespace;
    if (!NAME_RE.test(ns)) throw badRequest('invalid namespace name');
    const name = validName(ctx.params.name);
    const raw = await readRaw(ctx, d.config.KILN_MAX_BODY_BYTES);
    const text = raw.length === 0 || TEXT_TYPES.test(ctx.get('content-type'));
    const event = {
      method: ctx.method,
      path: '/' + (ctx.params.rest ?? ''),
      query: ctx.query,
      headers: ctx.headers,
      body: text ? raw.toString('utf8') : raw.toString('base64'),
      isBase64Encoded: !text,
    };
    const accepted = await d.invocations.invoke(ns, name, event, true, true);
    d.metrics.accepted.inc({ namespace: ns, function: name, mode: 'web' });
    respond(ctx, accepted, writeWebResult);
  });
}

/** {statusCode, headers, body, isBase64Encoded} as Lambda's function URLs; anything else is JSON. */
function writeWebResult(ctx: Context, result: unknown): void {
  const r = result as { statusCode?: unknown; headers?: unknown; body?: unknown; isBase64Encoded?: unknown } | null;
  if (!r || typeof r !== 'object' || typeof r.statusCode !== 'number') return writeJson(ctx, result);
  ctx.status = r.statusCode >= 100 && r.statusCode < 600 ? r.statusCode : 502;
  if (r.headers && typeof r.headers === 'object') {
    for (const [k, v] of Object.entries(r.headers)) if (typeof v === 'string' || typeof v === 'number') ctx.set(k, String(v));
  }
  if (typeof r.body === 'string') ctx.body = r.isBase64Encoded ? Buffer.from(r.body, 'base64') : r.body;
  else if (r.body !== undefined) {
    ctx.type = ctx.type || 'application/json';
    ctx.body = JSON.stringify(r.body);
  } else ctx.body = '';
}
