// kiln version: the version of this checkout's package.json.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ctx } from '../context';

/** Walks up from here (cli/commands or dist/cli/commands) to the kiln package.json. */
export function packageVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'kiln' && pkg.version) return pkg.version;
    } catch {
      // not here; keep climbing
    }
    if (path.dirname(dir) === dir) return 'unknown';
  }
}

export function version(ctx: Ctx): void {
  const v = packageVersion();
  if (ctx.json) ctx.printJson({ version: v });
  else ctx.print(v);
}
