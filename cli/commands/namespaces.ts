// kiln namespaces create NAME (admin key only): prints the new namespace's API key.
// kiln namespaces limits NAME [--rate N] [--burst N] [--in-flight N]: shows a namespace's
// admission limits, and with options (admin key) sets its own; "default" goes back to the
// gateway's default.
import { InvalidArgumentError } from 'commander';
import { Ctx } from '../context';
import { table } from '../format';

export async function createNamespace(ctx: Ctx, name: string): Promise<void> {
  const body = await ctx.client.call<{ name: string; apiKey: string }>('POST', '/v1/namespaces', { json: { name } });
  if (ctx.json) return ctx.printJson(body);
  ctx.print(`created namespace ${body.name}\napi key: ${body.apiKey}`);
}

/** A limit option: a whole number (0 turns rate and in-flight limits off), or "default". */
export function parseLimitValue(value: string): number | 'default' {
  if (value === 'default') return value;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a whole number or "default"');
  return n;
}

interface Limits {
  namespace: string;
  ratePerSecond: number;
  burst: number;
  inFlight: number;
  own: string[];
}

type LimitOption = number | 'default' | undefined;

export async function namespaceLimits(ctx: Ctx, name: string, opts: { rate?: LimitOption; burst?: LimitOption; inFlight?: LimitOption }): Promise<void> {
  const changes = { ratePerSecond: opts.rate, burst: opts.burst, inFlight: opts.inFlight };
  // null asks the gateway for its default.
  const set = Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined).map(([k, v]) => [k, v === 'default' ? null : v]));
  const route = `/v1/namespaces/${encodeURIComponent(name)}/limits`;
  const body = Object.keys(set).length
    ? await ctx.client.call<Limits>('PUT', route, { json: set })
    : await ctx.client.call<Limits>('GET', route);
  if (ctx.json) return ctx.printJson(body);
  const row = (label: string, key: keyof Limits, v: number, off: boolean) => [label, off && v === 0 ? 'off' : String(v), body.own.includes(key) ? 'own' : 'default'];
  ctx.print(`namespace ${body.namespace}`);
  ctx.print(table(['LIMIT', 'VALUE', 'SET BY'], [
    row('rate (invocations/s)', 'ratePerSecond', body.ratePerSecond, true),
    row('burst', 'burst', body.burst, false),
    row('in flight', 'inFlight', body.inFlight, true),
  ]));
}
