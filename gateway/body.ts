// Request bodies with a size limit: over the limit is 413 before more is read; bad JSON is 400.
import { Context } from 'koa';
import { KilnError, badRequest } from '../common/errors';

export async function readRaw(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('content-length') || 0);
  const tooLarge = () => new KilnError('payload_too_large', `the request body is larger than ${limit} bytes`);
  if (declared > limit) throw tooLarge();
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      ctx.req.destroy();
      throw tooLarge();
    }
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}

/** The JSON body, or `empty` when there is none. */
export async function readJson(ctx: Context, limit: number, empty: unknown = {}): Promise<unknown> {
  const raw = await readRaw(ctx, limit);
  if (raw.length === 0) return empty;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw badRequest(`the body is not valid JSON: ${(e as Error).message}`);
  }
}
