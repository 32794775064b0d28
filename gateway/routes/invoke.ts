// Invoking a function: sync (wait for the result up to the wait limit) or async (202 at once).
import Router from '@koa/router';
import { Context } from 'koa';
import { badRequest, ErrorCode, STATUS_OF } from '../../common/errors';
import { ACTIVATION_ID_RE } from '../../common/types';
import { namespaceOf } from '../auth';
import { readJson } from '../body';
import { Deps } from '../deps';
import { Accepted } from '../invocations';
import { validName } from './functions';

export function invokeRoutes(router: Router, d: Deps): void {
  router.post('/v1/functions/:name/invoke', async (ctx) => {
    const name = validName(ctx.params.name);
    const ns = namespaceOf(ctx);
    const event = await readJson(ctx, d.config.KILN_MAX_BODY_BYTES);
    const sync = ctx.query.async !== 'true';
    const accepted = await d.invocations.invoke(ns, name, event, sync, false, chosenId(ctx));
    d.metrics.accepted.inc({ namespace: ns, function: name, mode: sync ? 'sync' : 'async' });
    respond(ctx, accepted);
  });
}

/** A caller-chosen activation id (idempotency key), if any. */
export function chosenId(ctx: Context): string | undefined {
  const id = ctx.get('x-kiln-activation-id');
  if (!id) return undefined;
  if (!ACTIVATION_ID_RE.test(id)) throw badRequest('X-Kiln-Activation-Id must be 32 lowercase hex characters');
  return id;
}

/** Answers with the final record's result (written by `writeResult`) or error, or 202 when there is none yet. */
export function respond(ctx: Context, a: Accepted, writeResult: (ctx: Context, result: unknown) => void = writeJson): void {
  const r = a.record;
  if (!r) {
    ctx.status = 202;
    ctx.body = { activationId: a.activationId };
  } else if (r.status === 'success') writeResult(ctx, r.result);
  else {
    const code = (r.error?.code ?? r.status) as ErrorCode;
    ctx.status = STATUS_OF[code] ?? 500;
    ctx.body = { error: { code, message: r.error?.message ?? r.status }, activationId: a.activationId };
  }
  // Last: a web function's own headers cannot replace these.
  ctx.set('X-Kiln-Activation-Id', a.activationId);
  if (r?.start) ctx.set('X-Kiln-Start', r.start);
}

/** A result as a JSON body. */
export function writeJson(ctx: Context, result: unknown): void {
  ctx.status = 200;
  ctx.type = 'application/json';
  ctx.body = JSON.stringify(result ?? null);
}
