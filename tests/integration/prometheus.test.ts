// A real Prometheus scraping a real kiln with the repo's configuration, recording rules and
// alerts: after real invocations (successes, a thrown error, an async call, a freeze and a
// thaw), every recording rule and every query of the Grafana dashboard returns data.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { eventually, fn, freePort, Platform, ROOT, startPlatform, stopClean } from './harness';

jest.setTimeout(180_000);

const PROM = path.join(ROOT, 'infra', 'prometheus');
const DASHBOARD = path.join(ROOT, 'infra', 'grafana', 'dashboards', 'kiln.json');
const WAIT_MS = 60_000;

/** The names of the recording rules in rules.yml. */
function recordingRules(): string[] {
  const text = fs.readFileSync(path.join(PROM, 'rules.yml'), 'utf8');
  return [...text.matchAll(/^\s*-\s*record:\s*(\S+)\s*$/gm)].map((m) => m[1]);
}

/** Every target expr of the dashboard, with Grafana's variables replaced by values Prometheus takes. */
function dashboardQueries(): { title: string; expr: string }[] {
  const d = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
  const variables: string[] = d.templating.list.map((v: { name: string }) => v.name);
  const builtins: Record<string, string> = { __rate_interval: '1m', __interval: '15s', __range: '5m' };
  return d.panels.flatMap((p: { title: string; targets: { expr: string; refId: string }[] }) =>
    p.targets.map((t) => ({
      title: `${p.title} [${t.refId}]`,
      expr: t.expr.replace(/\$\{(\w+)(?::[^}]*)?\}|\$(\w+)/g, (all: string, a?: string, b?: string) => {
        const name = (a ?? b)!;
        if (name in builtins) return builtins[name];
        return variables.includes(name) ? '.*' : all;
      }),
    })));
}

/** infra/prometheus/prometheus.yml pointed at this platform, every second, with absolute rule paths. */
function prometheusConfig(gatewayPort: string, invokerPort: string): string {
  const replacements: [RegExp, string][] = [
    [/"127\.0\.0\.1:8080"/, `"127.0.0.1:${gatewayPort}"`],
    [/"127\.0\.0\.1:9101"/, `"127.0.0.1:${invokerPort}"`],
    [/^( {2}scrape_interval:) 5s$/m, '$1 1s'],
    [/^( {2}evaluation_interval:) 5s$/m, '$1 1s'],
    [/^( {2}- )rules\.yml/m, `$1${path.join(PROM, 'rules.yml')}`],
    [/^( {2}- )alerts\.yml/m, `$1${path.join(PROM, 'alerts.yml')}`],
  ];
  let text = fs.readFileSync(path.join(PROM, 'prometheus.yml'), 'utf8');
  for (const [from, to] of replacements) {
    if (!from.test(text)) throw new Error(`infra/prometheus/prometheus.yml no longer has ${from}`);
    text = text.replace(from, to);
  }
  return text;
}

describe('Prometheus with the repo rules, scraping a real kiln', () => {
  let p: Platform | undefined;
  let prom: ChildProcess | undefined;
  let promDir: string | undefined;
  let promUrl = '';
  let promLog = '';

  async function query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const res = await fetch(`${promUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`);
    const body = (await res.json()) as { status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
    if (body.status !== 'success') throw new Error(`query ${expr} failed: ${body.error}`);
    return body.data.result;
  }

  async function invoke(name: string, event: unknown, expected: number, async = false) {
    const r = await p!.api('POST', `/v1/functions/${name}/invoke${async ? '?async=true' : ''}`, event);
    if (r.status !== expected) throw new Error(`${name} ${JSON.stringify(event)}: ${r.status} ${r.text}, expected ${expected}`);
    return r;
  }

  beforeAll(async () => {
    const bin = ['/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((f) => fs.existsSync(f))
      ?? (process.env.PATH ?? '').split(':').map((d) => path.join(d, 'prometheus')).find((f) => fs.existsSync(f));
    if (!bin) throw new Error('prometheus is not installed: run scripts/setup.sh (npm test does), or apt-get install prometheus');

    p = await startPlatform({ KILN_PAUSE_GRACE_MS: '100' });
    for (const name of ['hello', 'crash']) {
      const r = await p.cli(['deploy', fn(name)]);
      expect({ name, code: r.code, stderr: r.stderr }).toEqual({ name, code: 0, stderr: '' });
    }

    promDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-prom-'));
    const config = path.join(promDir, 'prometheus.yml');
    await fsp.writeFile(config, prometheusConfig(new URL(p.url).port, String(p.env.KILN_INVOKER_METRICS_PORT)));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prom = spawn(bin, [
      `--config.file=${config}`,
      `--storage.tsdb.path=${path.join(promDir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    prom.stdout!.on('data', (d) => (promLog += d));
    prom.stderr!.on('data', (d) => (promLog += d));
    const exited = new Promise<never>((_, reject) => prom!.once('exit', (code) => reject(new Error(`prometheus exited ${code}:\n${promLog}`))));
    exited.catch(() => undefined);
    await Promise.race([
      exited,
      eventually(async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.ok, 30_000),
    ]);
  });

  afterAll(async () => {
    if (prom && prom.exitCode === null && prom.signalCode === null) {
      const gone = new Promise((r) => prom!.once('exit', r));
      prom.kill('SIGTERM');
      const timer = setTimeout(() => prom!.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    }
    if (promDir) await fsp.rm(promDir, { recursive: true, force: true });
    if (p) {
      await stopClean(p);
    }
  });

  it('scrapes the gateway and the invoker', async () => {
    // The `up` series is checked in the same wait: it may trail the targets' health a little.
    const up = await eventually(async () => {
      const res = await (await fetch(`${promUrl}/api/v1/targets`)).json() as { data: { activeTargets: { labels: { job: string }; health: string }[] } };
      const healthy = res.data.activeTargets.filter((t) => t.health === 'up').map((t) => t.labels.job).sort();
      const series = await query('up{job=~"kiln-.*"} == 1');
      return healthy.join() === 'kiln-gateway,kiln-invoker' && series.length === 2 && series;
    }, 20_000);
    expect(up.map((s) => s.metric.job).sort()).toEqual(['kiln-gateway', 'kiln-invoker']);
  });

  it('records every rule and answers every dashboard query after real invocations', async () => {
    // Successes; the first takes a stem cell (prewarm), the container then freezes.
    for (let i = 0; i < 3; i++) await invoke('hello', { name: `n${i}` }, 200);
    // A thrown error (502); more come in the loop below, so Prometheus sees the counter grow.
    await invoke('crash', { mode: 'throw' }, 502);
    // An async call, completed.
    const accepted = await invoke('hello', { name: 'later' }, 202, true);
    const id = accepted.body.activationId;
    await eventually(async () => (await p!.api('GET', `/v1/activations/${id}`)).body?.status === 'success');
    // Idle for more than the pause grace (100 ms): frozen, then thawed by the next call.
    await eventually(async () => (await query(`kiln_containers{state="frozen"} > 0`)).length > 0, 10_000);
    await new Promise((r) => setTimeout(r, 500));
    const thawed = await invoke('hello', { name: 'thawed' }, 200);
    expect(thawed.headers.get('x-kiln-start')).toBe('thawed');

    const wanted = [
      ...recordingRules().map((r) => ({ title: `recording rule ${r}`, expr: r })),
      ...dashboardQueries(),
      // The rules mean something, not only that they return a series.
      { title: 'hello succeeds', expr: 'kiln:invocations:rate1m{function="hello",status="success"} > 0' },
      { title: 'crash fails', expr: 'kiln:error_ratio:rate5m{function="crash"} > 0' },
      { title: 'hello has no errors', expr: 'kiln:error_ratio:rate5m{function="hello"} == 0' },
      { title: 'a thawed start is counted', expr: 'kiln:cold_start_ratio:rate5m{kind="thawed"}' },
      { title: 'the async call is counted', expr: 'kiln:invocations_accepted:rate1m{function="hello",mode="async"}' },
      { title: 'a thaw was timed', expr: 'kiln_thaw_seconds_count > 0' },
      { title: 'the invoker memory is used', expr: 'kiln:invoker_memory_utilisation > 0' },
    ];
    expect(recordingRules().length).toBeGreaterThanOrEqual(7);
    expect(dashboardQueries().length).toBeGreaterThanOrEqual(7);

    let missing: { title: string; expr: string }[] = wanted;
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      // Calls every round keep the rates fresh (a counter's first sample has no rate: each
      // status and start kind is its own series, so one error alone would never show).
      await invoke('hello', { name: 'again' }, 200);
      await invoke('crash', { mode: 'throw' }, 502);
      const empty = await Promise.all(missing.map(async (w) => ((await query(w.expr)).length ? undefined : w)));
      missing = empty.filter((w): w is { title: string; expr: string } => w !== undefined);
      if (!missing.length || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(missing.map((m) => `${m.title}: ${m.expr}`)).toEqual([]);
  });

  it('evaluates every rule and alert without error, and the platform is not alerting as down', async () => {
    type Rule = { name: string; type: string; health: string; lastError?: string; state?: string };
    const rules = async () => {
      const res = await (await fetch(`${promUrl}/api/v1/rules`)).json() as { data: { groups: { rules: Rule[] }[] } };
      return res.data.groups.flatMap((g) => g.rules);
    };
    const all = await eventually(async () => {
      const r = await rules();
      return r.every((x) => x.health !== 'unknown') && r;
    }, 10_000);
    expect(all.filter((r) => r.type === 'recording').map((r) => r.name).sort()).toEqual(recordingRules().sort());
    expect(all.filter((r) => r.type === 'alerting').map((r) => r.name)).toEqual(expect.arrayContaining(
      ['KilnHighErrorRate', 'KilnQueueBacklog', 'KilnInvokerDown', 'KilnInvokerMemoryNearCapacity']));
    expect(all.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.lastError}`)).toEqual([]);
    // Until the first scrapes absent(up) holds and the down alerts go pending (their `for:` keeps
    // them from firing); with both targets up they are inactive.
    const downStates = async () => (await rules()).filter((r) => ['KilnInvokerDown', 'KilnGatewayDown'].includes(r.name)).map((r) => `${r.name} ${r.state}`);
    // What the wait saw last, not a new query: the failure (if any) shows the states it timed out on.
    let down: string[] = [];
    await eventually(async () => (down = await downStates()).every((s) => s.endsWith(' inactive')), 15_000).catch(() => undefined);
    expect(down).toEqual(['KilnInvokerDown inactive', 'KilnGatewayDown inactive']);
  });
});
