// kiln inspect NAME: the function's record (config, versions, digest).
import { seg } from '../client';
import { Ctx } from '../context';
import { pretty } from '../format';

export async function inspect(ctx: Ctx, name: string): Promise<void> {
  const body = await ctx.client.call('GET', `/v1/functions/${seg(name)}`);
  ctx.print(ctx.json ? JSON.stringify(body) : pretty(body));
}
