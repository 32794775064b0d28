// The gateway's Prometheus metrics: what it accepted and how fast it answered. Final outcomes
// (kiln_invocations_total and the per-call histograms) are counted by the invokers, which see
// every invocation end, sync or async.
import { Queue } from 'bullmq';
import { Context, Next } from 'koa';
import * as client from 'prom-client';
import { InvokerStore } from '../common/store/invokers';
import { recommendedInvokers } from './scaling';

export interface ScrapeSources {
  queue: Queue;
  invokers: InvokerStore;
}

const QUEUE_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'failed', 'completed'] as const;

export function createGatewayMetrics(registry: client.Registry, sources?: ScrapeSources) {
  client.collectDefaultMetrics({ register: registry });
  if (sources) scrapeTimeGauges(registry, sources);
  const accepted = new client.Counter({
    name: 'kiln_invocations_accepted_total', help: 'Invocations accepted onto the queue',
    labelNames: ['namespace', 'function', 'mode'], registers: [registry],
  });
  const requests = new client.Histogram({
    name: 'kiln_http_request_duration_seconds', help: 'Gateway HTTP requests, from request in to response out',
    labelNames: ['method', 'route', 'code'], registers: [registry],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  });
  return {
    accepted,
    middleware: async (ctx: Context, next: Next) => {
      const end = requests.startTimer();
      try {
        await next();
      } finally {
        // The matched route pattern, never the raw path: label values stay bounded.
        const route = (ctx as unknown as { _matchedRoute?: string })._matchedRoute ?? 'unmatched';
        end({ method: ctx.method, route: String(route), code: String(ctx.status) });
      }
    },
  };
}

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;

/**
 * Autoscaling signals, computed when Prometheus scrapes: queue depth and live invokers, read
 * once per scrape (the three gauges share one reading taken within the last second).
 */
function scrapeTimeGauges(registry: client.Registry, { queue, invokers }: ScrapeSources): void {
  let reading: { at: number; state: Promise<[Record<string, number>, Awaited<ReturnType<InvokerStore['live']>>]> } | undefined;
  const read = () => {
    if (!reading || Date.now() - reading.at > 1000) reading = { at: Date.now(), state: Promise.all([queue.getJobCounts(...QUEUE_STATES), invokers.live()]) };
    return reading.state;
  };
  new client.Gauge({
    name: 'kiln_queue_depth', help: 'Invocation jobs in the queue by state',
    labelNames: ['queue', 'state'], registers: [registry],
    async collect() {
      const [counts] = await read();
      for (const state of QUEUE_STATES) this.set({ queue: queue.name, state }, counts[state] ?? 0);
    },
  });
  new client.Gauge({
    name: 'kiln_invokers', help: 'Invokers whose heartbeat is current',
    labelNames: ['state'], registers: [registry],
    async collect() {
      const [, live] = await read();
      this.set({ state: 'up' }, live.length);
    },
  });
  new client.Gauge({
    name: 'kiln_invokers_recommended', help: 'How many invokers the current load needs (see README: Autoscaling)',
    registers: [registry],
    async collect() {
      const [counts, live] = await read();
      this.set(recommendedInvokers(counts, live));
    },
  });
}
