// kiln activations [NAME] [--limit N]: recent activation records, newest first.
import { InvalidArgumentError } from 'commander';
import { ActivationRecord } from '../../common/types';
import { Ctx } from '../context';
import { duration, table } from '../format';

export interface ActivationsOptions {
  limit?: number;
}

/** commander argument parser for --limit. */
export function parseLimit(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

export function fetchActivations(ctx: Ctx, name: string | undefined, limit?: number) {
  return ctx.client.call<{ activations?: ActivationRecord[] } | undefined>('GET', '/v1/activations', {
    query: { function: name, limit },
  });
}

export async function activations(ctx: Ctx, name: string | undefined, opts: ActivationsOptions): Promise<void> {
  const body = await fetchActivations(ctx, name, opts.limit);
  if (ctx.json) return ctx.printJson(body);
  const rows = (body?.activations ?? []).map((a) => [
    a.activationId,
    a.function,
    a.status,
    a.start ?? '-',
    duration(a.durationMs),
  ]);
  ctx.print(table(['ID', 'FUNCTION', 'STATUS', 'START', 'DURATION'], rows));
}
