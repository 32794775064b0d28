// Starts a real kiln (embedded redis-server, gateway, invoker: `node dist/platform/main.js`) in a
// temporary state dir on free ports, and checks afterwards that nothing was left behind.
import { ChildProcess, execFile } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

import { REPO_ROOT } from '../../common/paths';

export const ROOT = REPO_ROOT;
const exec = promisify(execFile);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Platform {
  url: string;
  key: string;
  stateDir: string;
  invokerId: string;
  child: ChildProcess;
  env: NodeJS.ProcessEnv;
  cli(args: string[], extraEnv?: NodeJS.ProcessEnv): Promise<CliResult>;
  api(method: string, route: string, body?: unknown, opts?: { key?: string | null; raw?: Buffer | string; contentType?: string }): Promise<{ status: number; headers: Headers; body: any; text: string }>;
  children(): Promise<number[]>;
  stop(): Promise<void>;
}

import { freePort } from '../../common/net';
import { launch, leftovers as launchedLeftovers, platformEnv, stopPlatform } from '../../platform/launch';
import { childrenOf } from '../../platform/procs';

export { freePort };

export async function startPlatform(extraEnv: NodeJS.ProcessEnv = {}): Promise<Platform> {
  const stateDir = extraEnv.KILN_STATE_DIR ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-it-')));
  const invokerId = extraEnv.KILN_INVOKER_ID ?? `it-${path.basename(stateDir).slice(-6).toLowerCase().replace(/[^a-z0-9]/g, 'x')}`;
  const env = await platformEnv(stateDir, invokerId, extraEnv);
  const { child, url, key } = await launch(env);
  const cliEnv = { ...env, KILN_URL: url, KILN_API_KEY: key };

  const p: Platform = {
    url, key, stateDir, invokerId, child, env,
    async cli(args, more = {}) {
      try {
        const { stdout, stderr } = await exec(process.execPath, [path.join(ROOT, 'bin', 'kiln'), ...args], { env: { ...cliEnv, ...more }, cwd: ROOT });
        return { code: 0, stdout, stderr };
      } catch (e) {
        const err = e as { code: number; stdout: string; stderr: string };
        return { code: err.code, stdout: err.stdout, stderr: err.stderr };
      }
    },
    async api(method, route, body, opts = {}) {
      const headers: Record<string, string> = {};
      const k = opts.key === undefined ? key : opts.key;
      if (k) headers.authorization = `Bearer ${k}`;
      let payload: Buffer | string | undefined = opts.raw;
      if (body !== undefined) payload = JSON.stringify(body);
      if (payload !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
      const res = await fetch(url + route, { method, headers, body: typeof payload === 'string' || payload === undefined ? payload : new Uint8Array(payload) });
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      return { status: res.status, headers: res.headers, body: parsed, text };
    },
    async children() {
      return childrenOf(child.pid!).map((c) => c.pid);
    },
    async stop() {
      await stopPlatform(child);
    },
  };
  return p;
}

/** Everything of this platform's that is still on the machine. Empty lists mean clean. */
export const leftovers = (p: Platform, pids: number[]) => launchedLeftovers(p.stateDir, p.invokerId, pids);

/** Stops a platform, checks it left nothing on the machine, and removes its state dir. */
export async function stopClean(p: Platform, pids: number[] = []): Promise<void> {
  await p.stop();
  // Nothing the platform made is left: no container, mount, cgroup or process.
  expect(await leftovers(p, pids)).toEqual({ containers: [], mounts: [], cgroups: [], processes: [] });
  await fsp.rm(p.stateDir, { recursive: true, force: true });
}

export const fn = (name: string) => path.join(ROOT, 'functions', name);

/** Polls until `check` returns a value, or fails after `ms`. */
export async function eventually<T>(check: () => Promise<T | undefined | null | false>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    let v: T | undefined | null | false;
    let failure: unknown;
    try {
      v = await check();
    } catch (e) {
      failure = e; // not yet: e.g. a server still starting
    }
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`condition not met in time${failure ? `: ${failure}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
