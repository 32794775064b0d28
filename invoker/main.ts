// The kiln-invoker process: the invoker service plus its /metrics and /healthz endpoint.
import * as http from 'node:http';
import { loadConfig } from '../common/config';
import { createLogger } from '../common/log';
import { connect } from '../common/redis';
import { Invoker } from './invoker';
import { loadMountAddon } from './native/mount';

async function main() {
  process.title = 'kiln-invoker';
  const config = loadConfig();
  const log = createLogger('kiln-invoker', config.KILN_LOG_LEVEL);
  loadMountAddon(); // a missing build fails here, not at the first container
  const redis = connect(config);
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error')); // it reconnects
  const invoker = new Invoker(config, redis, log);
  await invoker.start();
  const server = http.createServer(async (req, res) => {
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': invoker.registry.contentType }).end(await invoker.registry.metrics());
    } else if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, invoker: invoker.id }));
    } else res.writeHead(404).end();
  });
  server.listen(config.KILN_INVOKER_METRICS_PORT, config.KILN_HOST);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping: finishing calls in hand, then removing containers');
    server.close();
    try {
      await invoker.stop();
    } finally {
      redis.disconnect();
      process.exit(0);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((e) => {
  console.error(`kiln-invoker: ${e instanceof Error ? e.stack : e}`);
  process.exit(1);
});
