// kiln invoke NAME [-d JSON | -d @file | -d @-] [--async]
import { readFileSync } from 'node:fs';
import { apiError, seg } from '../client';
import { Ctx } from '../context';
import { usageError } from '../errors';
import { pretty } from '../format';

export interface InvokeOptions {
  data?: string;
  async?: boolean;
}

/** The event from -d: inline JSON, @file, or @- for stdin; `{}` when absent. */
export function parseEvent(data: string | undefined): unknown {
  if (data === undefined) return {};
  let text = data;
  let source = '-d';
  if (data.startsWith('@')) {
    const file = data.slice(1);
    source = file === '-' ? 'stdin' : file;
    try {
      text = readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (err) {
      throw usageError(`cannot read ${source}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw usageError(`the event in ${source} is not valid JSON: ${(err as Error).message}`);
  }
}

export async function invoke(ctx: Ctx, name: string, opts: InvokeOptions): Promise<void> {
  const event = parseEvent(opts.data);
  const res = await ctx.client.request('POST', `/v1/functions/${seg(name)}/invoke`, {
    json: event,
    query: { async: opts.async ? 'true' : undefined },
  });
  const activationId = res.headers.get('x-kiln-activation-id') ?? (res.body as { activationId?: string } | undefined)?.activationId;
  if (res.status >= 400) {
    if (ctx.json) ctx.printRaw(res);
    const e = apiError(res);
    throw new Error(`${e.message} (${e.code}${activationId ? `, activation ${activationId}` : ''})`);
  }
  if (ctx.json) return ctx.printRaw(res, null);
  if (res.status === 202) {
    ctx.print(activationId ?? '');
    // Only a sync call can land here by surprise: the gateway stopped waiting, the work goes on.
    if (!opts.async) process.stderr.write(`kiln: still running after the gateway's wait limit; see: kiln logs ${activationId}\n`);
    return;
  }
  if (res.body !== undefined) ctx.print(pretty(res.body));
  else if (res.text) ctx.print(res.text);
}
