// Starts a whole kiln (`node dist/platform/main.js`: embedded redis-server, gateway, invoker) as
// a child process in a given state dir, on free ports. The integration tests, the bench and the
// chaos run start their platforms through here; each adds only what it needs around it.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DEFAULT_LAYERS_DIR, statePaths } from '../common/config';
import { freePort } from '../common/net';
import { REPO_ROOT } from '../common/paths';
import { run } from '../common/process';
import { cgroupVersion, hierarchies } from '../invoker/cgroups';
import { mountedUnder } from '../invoker/rootfs';
import { processTable, stopChild } from './procs';

/**
 * The environment of a platform in `stateDir`: the embedded Redis (an inherited REDIS_URL is
 * dropped unless `extra` sets one), the repo's layers, free ports, warnings-only logs.
 */
export async function platformEnv(stateDir: string, invokerId: string, extra: NodeJS.ProcessEnv = {}): Promise<NodeJS.ProcessEnv> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.REDIS_URL;
  delete env.KILN_URL;
  delete env.KILN_API_KEY;
  return {
    ...env,
    KILN_STATE_DIR: stateDir,
    KILN_LAYERS_DIR: DEFAULT_LAYERS_DIR,
    KILN_HOST: '127.0.0.1',
    KILN_PORT: String(await freePort()),
    KILN_INVOKER_METRICS_PORT: String(await freePort()),
    KILN_INVOKER_ID: invokerId,
    KILN_DEPLOY_EXAMPLES: '0',
    KILN_LOG_LEVEL: 'warn',
    ...extra,
  };
}

export interface LaunchOptions {
  detached?: boolean; // its own process group: a Ctrl-C reaches the caller only
  timeoutMs?: number;
  signal?: AbortSignal;
  onOutput?: (text: string) => void; // everything it prints, stdout and stderr
}

export interface Launched {
  child: ChildProcess;
  url: string;
  key: string; // the admin key
}

/**
 * Starts one more invoker for a running platform (`env`: the platform's), as `id`, with its
 * metrics and health on a free port at `url`. The caller waits for it to be healthy its own way.
 */
export async function launchInvoker(env: NodeJS.ProcessEnv, id: string, o: Pick<LaunchOptions, 'detached' | 'onOutput'> = {}): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'invoker', 'main.js')], {
    env: { ...env, KILN_INVOKER_ID: id, KILN_INVOKER_METRICS_PORT: String(port) },
    stdio: o.onOutput ? ['ignore', 'pipe', 'pipe'] : 'ignore',
    detached: o.detached ?? false,
  });
  if (o.onOutput) {
    child.stdout!.on('data', (d) => o.onOutput!(String(d)));
    child.stderr!.on('data', (d) => o.onOutput!(String(d)));
    child.on('error', (e) => o.onOutput!(`${e.message}\n`));
  }
  return { child, url: `http://127.0.0.1:${port}` };
}

/** Starts the platform with `env` and resolves once it says it is running. */
export async function launch(env: NodeJS.ProcessEnv, o: LaunchOptions = {}): Promise<Launched> {
  const timeoutMs = o.timeoutMs ?? 60_000;
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'platform', 'main.js')], {
    env, stdio: ['ignore', 'pipe', 'pipe'], detached: o.detached ?? false,
  });
  let recent = ''; // the tail, for error messages
  const seen = (d: Buffer) => {
    recent = (recent + d).slice(-8000);
    o.onOutput?.(String(d));
  };
  child.stdout!.on('data', seen);
  child.stderr!.on('data', seen);
  const started = new Promise<void>((resolve, reject) => {
    const fail = (why: string) => {
      cleanup();
      reject(new Error(`${why}\n${recent.slice(-4000)}`));
    };
    const timer = setTimeout(() => fail(`kiln did not start within ${timeoutMs / 1000} s`), timeoutMs);
    const check = () => {
      if (recent.includes('kiln is running')) {
        cleanup();
        resolve();
      }
    };
    const exited = (code: number | null, sig: string | null) => fail(`kiln exited (${code ?? sig}) while starting`);
    const aborted = () => fail('interrupted while kiln was starting');
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.off('exit', exited);
      o.signal?.removeEventListener('abort', aborted);
    };
    child.stdout!.on('data', check);
    child.once('exit', exited);
    o.signal?.addEventListener('abort', aborted, { once: true });
  });
  try {
    await started;
  } catch (e) {
    await stopPlatform(child, 15_000); // whatever it started, it removes
    throw e;
  }
  const key = (await fsp.readFile(statePaths(env.KILN_STATE_DIR!).adminKey, 'utf8')).trim();
  return { child, url: `http://127.0.0.1:${env.KILN_PORT}`, key };
}

/**
 * SIGTERM, then waits for the platform to stop in order; SIGKILL after `graceMs`. Resolves
 * true when it stopped on its own.
 */
export function stopPlatform(child: ChildProcess, graceMs = 90_000): Promise<boolean> {
  return stopChild(child, graceMs);
}

export interface Leftovers {
  containers: string[];
  mounts: string[];
  cgroups: string[];
  processes: number[];
}

/**
 * What a platform in `stateDir` left on the machine: runc containers of its invoker, mounts
 * under the state dir, the invoker's cgroups (v1 hierarchies and v2), processes whose command
 * line names the state dir, and those of `pids` still alive. Empty lists mean clean.
 */
export async function leftovers(stateDir: string, invokerId: string, pids: number[] = []): Promise<Leftovers> {
  const runcRoot = path.join(stateDir, 'runc', invokerId);
  const containers = fs.existsSync(runcRoot) ? (await run('runc', ['--root', runcRoot, 'list', '-q'])).split('\n').filter(Boolean) : [];
  const cgroups = (await hierarchies(cgroupVersion())).map((h) => path.join(h, 'kiln', invokerId)).filter((dir) => fs.existsSync(dir));
  const table = processTable().filter((p) => p.state !== 'Z');
  const processes = table.filter((p) => pids.includes(p.pid) || (p.pid !== process.pid && p.cmdline.includes(stateDir))).map((p) => p.pid);
  return { containers, mounts: await mountedUnder(stateDir), cgroups, processes };
}
