// kiln namespaces create NAME (admin key only): prints the new namespace's API key.
import { Ctx } from '../context';

export async function createNamespace(ctx: Ctx, name: string): Promise<void> {
  const body = await ctx.client.call<{ name: string; apiKey: string }>('POST', '/v1/namespaces', { json: { name } });
  if (ctx.json) return ctx.printJson(body);
  ctx.print(`created namespace ${body.name}\napi key: ${body.apiKey}`);
}
