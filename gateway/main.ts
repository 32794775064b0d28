// The kiln-gateway process.
import { Queue } from 'bullmq';
import * as client from 'prom-client';
import { loadConfig, statePaths } from '../common/config';
import { createLogger } from '../common/log';
import { bullConnectionFailFast, connect, connectFailFast } from '../common/redis';
import { QUEUE_NAME } from '../common/redis-keys';
import { ActivationStore } from '../common/store/activations';
import { ApiKeyStore } from '../common/store/apikeys';
import { FunctionStore } from '../common/store/functions';
import { InvokerStore } from '../common/store/invokers';
import { ensureAdminKey } from './admin-key';
import { createApp } from './app';
import { Invocations } from './invocations';
import { Admission } from './limits';
import { createGatewayMetrics } from './metrics';
import { ResultWaiter } from './results';

async function main() {
  process.title = 'kiln-gateway';
  const config = loadConfig();
  const log = createLogger('kiln-gateway', config.KILN_LOG_LEVEL);
  const redis = await connectFailFast(config);
  const queue = new Queue(QUEUE_NAME, { connection: bullConnectionFailFast(config) });
  queue.on('error', (err) => log.warn({ err: err.message }, 'queue connection error'));
  await queue.waitUntilReady();
  const activations = new ActivationStore(redis, config.KILN_ACTIVATION_TTL_S);
  const functions = new FunctionStore(redis);
  const apiKeys = new ApiKeyStore(redis);
  const invokers = new InvokerStore(redis);
  const waiter = new ResultWaiter(connect(config), activations);
  await waiter.start();
  await ensureAdminKey(statePaths(config.KILN_STATE_DIR).adminKey, apiKeys);
  const registry = new client.Registry();
  const admission = new Admission(redis, { ratePerSecond: config.KILN_RATE_LIMIT, burst: config.KILN_RATE_BURST, inFlight: config.KILN_INFLIGHT_LIMIT });
  const app = createApp({
    config, log, redis, functions, activations, apiKeys, invokers, registry, admission,
    metrics: createGatewayMetrics(registry, { queue, invokers }),
    invocations: new Invocations(queue, functions, activations, waiter, config.KILN_SYNC_WAIT_MS, admission, config.KILN_JOB_ATTEMPTS),
  });
  const server = app.listen(config.KILN_PORT, config.KILN_HOST, () => {
    log.info({ url: `http://${config.KILN_HOST}:${config.KILN_PORT}` }, 'gateway listening');
  });
  // Slow clients: headers within 10 s, the whole request (not the response) within 30 s.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  const stop = () => {
    server.close();
    void queue.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error(`kiln-gateway: ${e instanceof Error ? e.stack : e}`);
  process.exit(1);
});
