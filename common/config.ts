// The environment is parsed once, here; each component takes the slice it needs.
// Bad values stop start-up with a message naming the variable.
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { REPO_ROOT } from './paths';

const int = (def: number) => z.coerce.number().int().nonnegative().default(def);

/** Where an unconfigured kiln keeps its state: in the repository. */
export const DEFAULT_STATE_DIR = path.join(REPO_ROOT, '.kiln');
/** The layers `scripts/setup.sh` builds: what local platforms of tests and tools share. */
export const DEFAULT_LAYERS_DIR = path.join(DEFAULT_STATE_DIR, 'layers');

const schema = z.object({
  KILN_PORT: int(8080),
  KILN_HOST: z.string().default('127.0.0.1'),
  KILN_STATE_DIR: z.string().default(DEFAULT_STATE_DIR),
  KILN_LAYERS_DIR: z.string().optional(),
  REDIS_URL: z.string().url().optional(),
  // runc, crun, or the absolute path of a binary with runc's command line.
  KILN_OCI_RUNTIME: z.string().regex(/^(runc|crun|\/\S+)$/, 'runc, crun or an absolute path').default('runc'),
  KILN_INVOKER_METRICS_PORT: int(9101),
  KILN_INVOKER_MEMORY_MB: int(Math.floor((os.totalmem() / 2 ** 20) * 0.75)),
  KILN_INVOKER_ID: z.string().regex(/^[a-z0-9-]{1,32}$/).default('invoker0'),
  KILN_INVOKER_CONCURRENCY: int(32),
  // Freeze a warm container this long after its last call (see README: Freezing).
  KILN_PAUSE_GRACE_MS: int(500),
  KILN_PREWARM_COUNT: int(2),
  KILN_PREWARM_MEMORY_MB: int(256),
  KILN_WAIT_FOR_ROOM_MS: int(2_000),
  KILN_IDLE_TIMEOUT_MS: int(600_000),
  KILN_SYNC_WAIT_MS: int(60_000),
  KILN_JOB_LOCK_MS: int(30_000),
  KILN_JOB_ATTEMPTS: int(3),
  KILN_SHUTDOWN_GRACE_MS: int(30_000),
  KILN_PEER_SWEEP_MS: int(30_000),
  KILN_ACTIVATION_TTL_S: int(7 * 24 * 3600),
  KILN_MAX_BODY_BYTES: int(6 * 2 ** 20),
  KILN_MAX_PACKAGE_BYTES: int(50 * 2 ** 20),
  KILN_MAX_LOG_BYTES: int(64 * 2 ** 10),
  // Per namespace; 0 turns a limit off.
  KILN_RATE_LIMIT: int(5000),
  KILN_RATE_BURST: int(10000),
  KILN_INFLIGHT_LIMIT: int(1000),
  KILN_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type Config = Omit<z.infer<typeof schema>, 'KILN_LAYERS_DIR'> & { KILN_LAYERS_DIR: string };

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join('\n')}`);
  }
  const stateDir = path.resolve(parsed.data.KILN_STATE_DIR);
  // Layers may be shared by several state dirs (tests, several invokers on one host).
  return { ...parsed.data, KILN_STATE_DIR: stateDir, KILN_LAYERS_DIR: path.resolve(parsed.data.KILN_LAYERS_DIR ?? path.join(stateDir, 'layers')) };
}

/** Where things live inside the state dir. */
export function statePaths(stateDir: string) {
  return {
    root: stateDir,
    containers: path.join(stateDir, 'containers'),
    runcRoot: path.join(stateDir, 'runc'),
    redis: path.join(stateDir, 'redis'),
    adminKey: path.join(stateDir, 'admin-key'),
  };
}
