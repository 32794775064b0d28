// A closed-loop load driver: `concurrency` callers, each sending its next request when the
// previous one ended, first for a warm-up period (not counted), then for a measured window that
// ends at whichever of its duration or request count comes first.
import { Summary, summarize } from './stats';

export interface LoadResult {
  concurrency: number;
  warmupMs: number;
  windowMs: number;
  completed: number;
  errors: number;
  firstError?: string;
  rps: number;
  latency: Summary;
  completedSinceWarmup: number; // calls that ended after the warm-up, until the last one ended
}

export interface LoadHooks {
  onMeasureStart?: () => void;
}

export async function closedLoop(concurrency: number, warmupMs: number, measureMs: number, maxRequests: number, call: () => Promise<void>, hooks: LoadHooks = {}): Promise<LoadResult> {
  const begin = performance.now();
  const measureFrom = begin + warmupMs;
  const hardEnd = measureFrom + measureMs;
  let windowEnd = hardEnd;
  let completed = 0;
  let errors = 0;
  let firstError: string | undefined;
  const lat: number[] = [];
  let sinceWarmup = 0;
  const hook = setTimeout(() => hooks.onMeasureStart?.(), warmupMs);
  const lane = async () => {
    for (;;) {
      const t = performance.now();
      if (t >= windowEnd) return;
      let ok = true;
      try {
        await call();
      } catch (e) {
        ok = false;
        firstError ??= e instanceof Error ? e.message : String(e);
      }
      const end = performance.now();
      if (end >= measureFrom) sinceWarmup++;
      // Only calls both started and ended inside the window count.
      if (t >= measureFrom && end <= windowEnd) {
        if (ok) {
          completed++;
          lat.push(end - t);
          if (completed >= maxRequests) windowEnd = Math.min(windowEnd, end);
        } else errors++;
      } else if (!ok && t >= measureFrom) errors++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  clearTimeout(hook);
  const windowMs = Math.max(1, Math.min(windowEnd, hardEnd) - measureFrom);
  return { concurrency, warmupMs, windowMs: Math.round(windowMs), completed, errors, firstError, rps: Math.round((completed / windowMs) * 1000 * 10) / 10, latency: summarize(lat), completedSinceWarmup: sinceWarmup };
}
