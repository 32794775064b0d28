// kiln ls: the functions visible to this key.
import { FunctionRecord } from '../../common/types';
import { Ctx } from '../context';
import { table, time } from '../format';

export async function ls(ctx: Ctx): Promise<void> {
  const body = await ctx.client.call<{ functions?: FunctionRecord[] }>('GET', '/v1/functions');
  if (ctx.json) return ctx.printJson(body);
  const fns = (body?.functions ?? []).slice();
  const key = (f: FunctionRecord) => `${f.namespace}/${f.name}`;
  fns.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  // The admin key sees every namespace: only then is the namespace worth a column.
  const manyNs = new Set(fns.map((f) => f.namespace)).size > 1;
  const header = ['NAME', 'VERSION', 'RUNTIME', 'MEMORY', 'UPDATED'];
  const rows = fns.map((f) => [
    manyNs ? key(f) : f.name,
    String(f.version),
    f.config?.runtime ?? '-',
    f.config?.memoryMB !== undefined ? `${f.config.memoryMB}MB` : '-',
    time(f.updatedAt),
  ]);
  ctx.print(table(header, rows));
}
