// kiln usage: billed time, GB-seconds and CPU per namespace over a window (default: 24 hours).
import { Usage } from '../../common/store/activations';
import { Ctx } from '../context';
import { table } from '../format';

export async function usage(ctx: Ctx, opts: { from?: string; to?: string }): Promise<void> {
  const body = await ctx.client.call<{ from: number; to: number; namespaces: Usage[]; total: Omit<Usage, 'namespace'> }>('GET', '/v1/usage', {
    query: { from: opts.from, to: opts.to },
  });
  if (ctx.json) return ctx.printJson(body);
  const row = (name: string, u: Omit<Usage, 'namespace'>) => [name, String(u.invocations), `${u.billedMs}`, u.gbSeconds.toFixed(3), u.cpuMs.toFixed(1)];
  ctx.print(`from ${new Date(body.from).toISOString()} to ${new Date(body.to).toISOString()}`);
  ctx.print(table(['NAMESPACE', 'INVOCATIONS', 'BILLED MS', 'GB-SECONDS', 'CPU MS'], [...body.namespaces.map((u) => row(u.namespace, u)), row('total', body.total)]));
}
