// Request bodies with a size limit: over the limit is 413 before more is read; bad JSON is 400.
import { Context } from 'koa';
import { KilnError, badRequest } from '../common/errors';

export function readRaw(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('content-length') || 0);
  const tooLarge = () => new KilnError('payload_too_large', `the request body is larger than ${limit} bytes`);
  if (declared > limit) return Promise.reject(tooLarge());
  // Plain stream events: a small body arrives in one chunk, and this costs no extra ticks.
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const req = ctx.req;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.destroy();
        reject(tooLarge());
      } else parts.push(chunk);
    });
    req.once('end', () => resolve(parts.length === 1 ? parts[0] : Buffer.concat(parts)));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new KilnError('bad_request', 'the request body ended early'));
    });
  });
}

/** The JSON body, or {} when there is none. */
export async function readJson(ctx: Context, limit: number): Promise<unknown> {
  const raw = await readRaw(ctx, limit);
  if (raw.length === 0) return {};
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw badRequest(`the body is not valid JSON: ${(e as Error).message}`);
  }
}
