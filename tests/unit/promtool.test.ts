// The Prometheus and Grafana configuration in infra/: promtool accepts the configs, the rules and
// the alerts, the rules' own unit tests pass, and the dashboard is well formed with a real
// PromQL query in every panel. promtool comes with Debian's `prometheus` package, which
// scripts/setup.sh installs (`npm test` runs it first).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const PROM = path.join(ROOT, 'infra', 'prometheus');
const GRAFANA = path.join(ROOT, 'infra', 'grafana');

/** The panels the dashboard must have (titles, exactly). */
const REQUIRED_PANELS = [
  'Invocations per second by function and status',
  'Invocation latency percentiles (p50/p90/p99)',
  'Cold-start ratio by kind',
  'Queue depth by state',
  'Containers by state',
  'Invoker memory: used vs capacity',
  'Billed GB-seconds by namespace',
];

function promtool(...args: string[]) {
  const r = spawnSync('promtool', args, { cwd: ROOT, encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error('promtool is not installed: run scripts/setup.sh (npm test does), or apt-get install prometheus');
  }
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}

function expectOk(r: { code: number | null; output: string }) {
  if (r.code !== 0) throw new Error(`promtool failed (exit ${r.code}):\n${r.output}`);
}

interface Target { expr?: string; refId?: string; datasource?: { uid?: string } }
interface Panel { id: number; type: string; title: string; targets?: Target[]; datasource?: { uid?: string }; gridPos: { x: number; y: number; w: number; h: number } }
const dashboard = () => JSON.parse(fs.readFileSync(path.join(GRAFANA, 'dashboards', 'kiln.json'), 'utf8'));

// Grafana's built-in variables and the values they stand for when checking the queries.
const BUILTINS: Record<string, string> = { __rate_interval: '1m', __interval: '15s', __range: '1h' };

/** A dashboard expr with Grafana's variables replaced: built-ins by durations, the dashboard's by `.*`. */
function concreteExpr(expr: string, variables: string[]): string {
  return expr.replace(/\$\{(\w+)(?::[^}]*)?\}|\$(\w+)/g, (all, a: string | undefined, b: string | undefined) => {
    const name = (a ?? b)!;
    if (name in BUILTINS) return BUILTINS[name];
    if (variables.includes(name)) return '.*';
    return all;
  });
}

describe('Prometheus configuration (promtool)', () => {
  it('accepts infra/prometheus/prometheus.yml and the rule files it names', () => {
    expectOk(promtool('check', 'config', 'infra/prometheus/prometheus.yml'));
  });

  it('accepts the recording rules and the alerts', () => {
    const r = promtool('check', 'rules', 'infra/prometheus/rules.yml', 'infra/prometheus/alerts.yml');
    expectOk(r);
    expect(r.output).not.toMatch(/WARNING/);
  });

  it('passes the rules unit tests (infra/prometheus/rules.test.yml)', () => {
    expectOk(promtool('test', 'rules', 'infra/prometheus/rules.test.yml'));
  });

  it('accepts the Kubernetes scrape configuration', () => {
    const file = path.join(PROM, 'kubernetes-scrape.yml');
    let r = promtool('check', 'config', file);
    if (r.code !== 0 && /field kubernetes_sd_configs not found/.test(r.output)) {
      // Debian builds Prometheus without Kubernetes discovery. Check everything else (relabelling,
      // anchors, rule files) with the discovery blocks swapped for static targets.
      const text = fs.readFileSync(file, 'utf8').replace(
        /^(\s*)kubernetes_sd_configs:\n(?:\1\s+.*\n)+/gm,
        (_m, indent: string) => `${indent}static_configs:\n${indent}  - targets: ["127.0.0.1:1"]\n`,
      );
      expect(text).not.toMatch(/kubernetes_sd_configs/);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-promtool-'));
      try {
        for (const f of ['rules.yml', 'alerts.yml']) fs.copyFileSync(path.join(PROM, f), path.join(dir, f));
        fs.writeFileSync(path.join(dir, 'kubernetes-scrape.yml'), text);
        r = promtool('check', 'config', path.join(dir, 'kubernetes-scrape.yml'));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    expectOk(r);
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toMatch(/job_name: kiln-gateway/);
    expect(text).toMatch(/job_name: kiln-invoker/);
    expect(text).toMatch(/__meta_kubernetes_pod_annotation_prometheus_io_scrape/);
  });

  it('names the jobs the alerts and scripts/prometheus.sh expect', () => {
    const text = fs.readFileSync(path.join(PROM, 'prometheus.yml'), 'utf8');
    expect(text).toMatch(/job_name: kiln-gateway[\s\S]*"127\.0\.0\.1:8080"/);
    expect(text).toMatch(/job_name: kiln-invoker[\s\S]*"127\.0\.0\.1:9101"/);
    expect(text).toMatch(/^ {2}scrape_interval: 5s$/m);
    expect(text).toMatch(/^ {2}- rules\.yml/m);
    expect(text).toMatch(/^ {2}- alerts\.yml/m);
  });
});

describe('Grafana dashboard (infra/grafana/dashboards/kiln.json)', () => {
  const d = dashboard();
  const panels: Panel[] = d.panels;
  const variables: string[] = d.templating.list.map((v: { name: string }) => v.name);

  it('is a dashboard Grafana can load', () => {
    expect(d.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(d.uid).toBe('kiln');
    expect(d.title).toBeTruthy();
    expect(panels.length).toBeGreaterThan(0);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      expect(p.gridPos.w).toBeGreaterThan(0);
      expect(p.gridPos.h).toBeGreaterThan(0);
    }
    // No two panels overlap.
    for (const a of panels) {
      for (const b of panels) {
        if (a === b) continue;
        const overlap = a.gridPos.x < b.gridPos.x + b.gridPos.w && b.gridPos.x < a.gridPos.x + a.gridPos.w
          && a.gridPos.y < b.gridPos.y + b.gridPos.h && b.gridPos.y < a.gridPos.y + a.gridPos.h;
        expect(overlap ? `${a.title} overlaps ${b.title}` : '').toBe('');
      }
    }
  });

  it('has the required panels', () => {
    const titles = panels.map((p) => p.title);
    for (const t of REQUIRED_PANELS) expect(titles).toContain(t);
  });

  it('queries the prometheus data source in every panel, with an expr in every target', () => {
    for (const p of panels) {
      expect({ panel: p.title, targets: (p.targets ?? []).length > 0 }).toEqual({ panel: p.title, targets: true });
      expect(p.datasource?.uid).toBe('prometheus');
      for (const t of p.targets!) {
        expect({ panel: p.title, expr: typeof t.expr === 'string' && t.expr.trim().length > 0 }).toEqual({ panel: p.title, expr: true });
        expect(t.datasource?.uid ?? p.datasource?.uid).toBe('prometheus');
        expect(t.refId).toBeTruthy();
      }
    }
    for (const v of d.templating.list) expect(v.datasource?.uid).toBe('prometheus');
  });

  it('uses only variables that exist', () => {
    for (const p of panels) {
      for (const t of p.targets!) {
        const left = concreteExpr(t.expr!, variables).match(/\$\{?[A-Za-z_]\w*/g);
        expect({ panel: p.title, unknownVariables: left }).toEqual({ panel: p.title, unknownVariables: null });
      }
    }
  });

  it('has queries that are valid PromQL (checked by promtool as recording rules)', () => {
    const exprs = panels.flatMap((p) => p.targets!.map((t) => concreteExpr(t.expr!, variables)));
    const rules = ['groups:', '  - name: dashboard', '    rules:',
      ...exprs.flatMap((e, i) => [`      - record: dashboard:expr${i}`, `        expr: ${JSON.stringify(e)}`])].join('\n');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-promtool-'));
    try {
      fs.writeFileSync(path.join(dir, 'dashboard-rules.yml'), rules + '\n');
      expectOk(promtool('check', 'rules', path.join(dir, 'dashboard-rules.yml')));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is provisioned with a data source whose uid is prometheus', () => {
    const ds = fs.readFileSync(path.join(GRAFANA, 'provisioning', 'datasources', 'kiln.yml'), 'utf8');
    expect(ds).toMatch(/^\s*uid: prometheus$/m);
    expect(ds).toMatch(/^\s*type: prometheus$/m);
    const dashboards = fs.readFileSync(path.join(GRAFANA, 'provisioning', 'dashboards', 'kiln.yml'), 'utf8');
    expect(dashboards).toMatch(/^\s*type: file$/m);
    expect(dashboards).toMatch(/^\s*path: \S+/m);
  });
});
