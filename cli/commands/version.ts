// kiln version: the version of this checkout's package.json.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from '../../common/paths';
import { Ctx } from '../context';

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

export function version(ctx: Ctx): void {
  const v = packageVersion();
  if (ctx.json) ctx.printJson({ version: v });
  else ctx.print(v);
}
