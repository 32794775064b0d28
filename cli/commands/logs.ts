// kiln logs NAME|ACTIVATION_ID: captured stdout/stderr of one activation (a function's newest).
import { seg } from '../client';
import { Ctx } from '../context';
import { CliError } from '../errors';
import { fetchActivations } from './activations';

const ACTIVATION_ID = /^[0-9a-f]{32}$/i;

export async function logs(ctx: Ctx, target: string): Promise<void> {
  let id = target;
  if (!ACTIVATION_ID.test(target)) {
    const newest = (await fetchActivations(ctx, target, 1))?.activations?.[0];
    if (!newest) throw new CliError(`no activations of function ${target}`);
    id = newest.activationId;
  }
  const body = await ctx.client.call<{ activationId: string; logs?: string[] }>('GET', `/v1/activations/${seg(id)}/logs`);
  if (ctx.json) return ctx.printJson(body);
  const lines = body?.logs ?? [];
  if (lines.length) ctx.print(lines.map((l) => l.replace(/\n$/, '')).join('\n'));
}
