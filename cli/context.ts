// What every command gets: a client, the output mode, and printing helpers.
import { ApiResponse, KilnClient } from './client';

export interface GlobalOptions {
  json?: boolean;
  url?: string;
  key?: string;
}

export interface Ctx {
  client: KilnClient;
  json: boolean;
  /** One line (or block) on stdout. */
  print(text: string): void;
  /** A value as compact JSON on one line. */
  printJson(value: unknown): void;
  /** In --json mode: the API's body exactly as it came (or `fallback` when it was empty). */
  printRaw(res: ApiResponse, fallback?: unknown): void;
}

export function makeCtx(opts: GlobalOptions, client = new KilnClient({ url: opts.url, key: opts.key })): Ctx {
  const print = (text: string) => {
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  };
  return {
    client,
    json: !!opts.json,
    print,
    printJson: (value) => print(JSON.stringify(value ?? null)),
    printRaw(res, fallback) {
      if (res.text.trim()) print(res.text);
      else if (fallback !== undefined) print(JSON.stringify(fallback));
    },
  };
}
