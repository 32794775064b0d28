// kiln rm NAME: delete a function.
import { seg } from '../client';
import { Ctx } from '../context';

export async function rm(ctx: Ctx, name: string): Promise<void> {
  const body = await ctx.client.call('DELETE', `/v1/functions/${seg(name)}`);
  if (ctx.json) ctx.printJson(body ?? { name, deleted: true });
  else ctx.print(`deleted ${name}`);
}
