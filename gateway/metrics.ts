// The gateway's Prometheus metrics: what it accepted and how fast it answered. Final outcomes
// (kiln_invocations_total and the per-call histograms) are counted by the invokers, which see
// every invocation end, sync or async.
import { Context, Next } from 'koa';
import * as client from 'prom-client';

export function createGatewayMetrics(registry: client.Registry) {
  client.collectDefaultMetrics({ register: registry });
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
