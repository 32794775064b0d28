// kiln ps and kiln stats: containers on every live invoker, as `docker ps` and `docker stats`.
import { ContainerInfo } from '../../common/store/invokers';
import { Ctx } from '../context';
import { table } from '../format';

type Row = ContainerInfo & { invoker: string; sampledAt: number };

const fnName = (c: Row) => (c.function ? `${c.namespace}/${c.function}@${c.version}` : '(prewarm)');
const mb = (bytes: number | null) => (bytes === null ? '-' : `${(bytes / 2 ** 20).toFixed(1)}MB`);

function uptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

async function fetchContainers(ctx: Ctx) {
  return ctx.client.call<{ containers: Row[] }>('GET', '/v1/containers');
}

export async function ps(ctx: Ctx): Promise<void> {
  const body = await fetchContainers(ctx);
  if (ctx.json) return ctx.printJson(body);
  const rows = body.containers
    .sort((a, b) => a.createdAt - b.createdAt)
    .map((c) => [c.id, fnName(c), c.state, `${c.memoryMB}MB`, uptime(c.sampledAt - c.createdAt), c.invoker]);
  ctx.print(table(['CONTAINER', 'FUNCTION', 'STATE', 'MEMORY', 'UPTIME', 'INVOKER'], rows));
}

/** Two samples of each container's CPU time a few seconds apart give its CPU use in between. */
export async function stats(ctx: Ctx, opts: { interval?: string }): Promise<void> {
  const first = await fetchContainers(ctx);
  await new Promise((r) => setTimeout(r, Number(opts.interval ?? 2500)));
  const second = await fetchContainers(ctx);
  const before = new Map(first.containers.map((c) => [`${c.invoker}/${c.id}`, c]));
  const rows = second.containers.map((c) => {
    const b = before.get(`${c.invoker}/${c.id}`);
    const dt = b ? c.sampledAt - b.sampledAt : 0;
    const cpu = b && dt > 0 && c.cpuNs !== null && b.cpuNs !== null ? ((c.cpuNs - b.cpuNs) / 1e6 / dt) * 100 : null;
    return { ...c, cpuPercent: cpu === null ? null : Math.round(cpu * 10) / 10 };
  });
  if (ctx.json) return ctx.printJson({ containers: rows });
  ctx.print(
    table(
      ['CONTAINER', 'FUNCTION', 'STATE', 'CPU %', 'MEM USAGE / LIMIT', 'MEM %', 'INVOKER'],
      rows.map((c) => [
        c.id, fnName(c), c.state, c.cpuPercent === null ? '-' : `${c.cpuPercent.toFixed(1)}%`,
        `${mb(c.memoryBytes)} / ${c.memoryMB}MB`,
        c.memoryBytes === null ? '-' : `${((c.memoryBytes / (c.memoryMB * 2 ** 20)) * 100).toFixed(1)}%`,
        c.invoker,
      ]),
    ),
  );
}
