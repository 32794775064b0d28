// What the gateway's routes need, built once by main (or a test) and passed to createApp.
import * as client from 'prom-client';
import { Redis } from 'ioredis';
import { Config } from '../common/config';
import { Logger } from '../common/log';
import { ActivationStore } from '../common/store/activations';
import { ApiKeyStore } from '../common/store/apikeys';
import { FunctionStore } from '../common/store/functions';
import { InvokerStore } from '../common/store/invokers';
import { Invocations } from './invocations';
import { Admission } from './limits';
import { GatewayMetrics } from './metrics';

export interface Deps {
  config: Config;
  log: Logger;
  redis: Redis;
  functions: FunctionStore;
  activations: ActivationStore;
  apiKeys: ApiKeyStore;
  invokers: InvokerStore;
  invocations: Invocations;
  admission: Admission;
  registry: client.Registry;
  metrics: GatewayMetrics;
}
