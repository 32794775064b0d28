// `npm start`: the whole platform in the foreground. Runs the embedded Redis (unless REDIS_URL
// is set), the gateway and one invoker as their own processes, restarts either if it dies,
// deploys the examples in functions/, and on SIGINT/SIGTERM stops everything it started.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { loadConfig, statePaths } from '../common/config';
import { createLogger } from '../common/log';
import { KilnClient } from '../cli/client';
import { deployDirectory } from '../cli/commands/deploy';
import { EmbeddedRedis } from './redis';
import { Supervised } from './supervisor';
import { REPO_ROOT } from '../common/paths';

const DIST = path.join(REPO_ROOT, 'dist');

async function main() {
  process.title = 'kiln';
  const config = loadConfig();
  const log = createLogger('kiln', config.KILN_LOG_LEVEL);
  await fsp.mkdir(config.KILN_STATE_DIR, { recursive: true });
  let redis: EmbeddedRedis | undefined;
  if (!config.REDIS_URL) {
    redis = new EmbeddedRedis(config.KILN_STATE_DIR, log);
    await redis.start();
  }
  const env = { ...process.env, KILN_STATE_DIR: config.KILN_STATE_DIR };
  const node = (name: string, script: string) => new Supervised(name, process.execPath, [path.join(DIST, script)], log, { env });
  const gateway = node('kiln-gateway', 'gateway/main.js');
  const invoker = node('kiln-invoker', 'invoker/main.js');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping kiln');
    await Promise.all([gateway.stop(5_000), invoker.stop(60_000)]);
    await redis?.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));

  await Promise.all([gateway.start(), invoker.start()]);
  const url = `http://${config.KILN_HOST}:${config.KILN_PORT}`;
  await waitForHealth(url);
  await waitForHealth(`http://${config.KILN_HOST}:${config.KILN_INVOKER_METRICS_PORT}`);
  if (process.env.KILN_DEPLOY_EXAMPLES !== '0') await deployExamples(url, config.KILN_STATE_DIR, log);
  console.log(`kiln is running at ${url}`);
  console.log(`admin API key: ${statePaths(config.KILN_STATE_DIR).adminKey}`);
  console.log(`try: npx kiln invoke hello -d '{"name":"you"}'`);
}

async function waitForHealth(url: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no healthy answer from ${url}/healthz`);
}

async function deployExamples(url: string, stateDir: string, log: ReturnType<typeof createLogger>): Promise<void> {
  const key = (await fsp.readFile(statePaths(stateDir).adminKey, 'utf8')).trim();
  const client = new KilnClient({ url, key });
  const dir = path.join(REPO_ROOT, 'functions');
  for (const name of (await fsp.readdir(dir)).sort()) {
    try {
      const r = await deployDirectory(client, path.join(dir, name));
      log.info({ function: r.name, version: r.version }, 'example deployed');
    } catch (e) {
      log.warn({ function: name, err: (e as Error).message }, 'example not deployed');
    }
  }
}

main().catch((e) => {
  console.error(`kiln: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
