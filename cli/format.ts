// Plain-text rendering for human output.

/** Left-aligned columns separated by two spaces; the header row first. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : (c ?? '').padEnd(widths[i]))).join('  ').trimEnd())
    .join('\n');
}

/** Epoch ms as a UTC timestamp to the second, or '-'. */
export function time(ms: number | undefined): string {
  return typeof ms === 'number' && ms > 0 ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') : '-';
}

export function duration(ms: number | undefined): string {
  if (typeof ms !== 'number') return '-';
  return ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(2)}s`;
}

export const pretty = (v: unknown) => JSON.stringify(v, null, 2) ?? 'undefined';
