// common/config.ts: the documented defaults, overrides, and start-up errors that name the
// offending variable.
import * as path from 'node:path';
import { loadConfig, statePaths } from '../../common/config';

describe('loadConfig defaults', () => {
  const cfg = loadConfig({});

  it('uses the documented defaults', () => {
    expect(cfg.KILN_PORT).toBe(8080);
    expect(cfg.KILN_OCI_RUNTIME).toBe('runc');
    expect(cfg.KILN_INVOKER_METRICS_PORT).toBe(9101);
    expect(cfg.REDIS_URL).toBeUndefined();
    expect(cfg.KILN_INVOKER_MEMORY_MB).toBeGreaterThan(0);
    expect(cfg.KILN_PAUSE_GRACE_MS).toBeGreaterThan(0);
  });

  it('puts state in an absolute .kiln folder and layers under it', () => {
    expect(path.isAbsolute(cfg.KILN_STATE_DIR)).toBe(true);
    expect(path.basename(cfg.KILN_STATE_DIR)).toBe('.kiln');
    expect(cfg.KILN_LAYERS_DIR).toBe(path.join(cfg.KILN_STATE_DIR, 'layers'));
  });

  it('defaults the state dir to .kiln in the checkout (also when run from source)', () => {
    expect(cfg.KILN_STATE_DIR).toBe(path.resolve(__dirname, '..', '..', '.kiln'));
  });

  it('does not read process.env when given an env object', () => {
    const saved = process.env.KILN_PORT;
    process.env.KILN_PORT = '1234';
    try {
      expect(loadConfig({}).KILN_PORT).toBe(8080);
    } finally {
      if (saved === undefined) delete process.env.KILN_PORT;
      else process.env.KILN_PORT = saved;
    }
  });
});

describe('loadConfig overrides', () => {
  it('takes numbers, strings and enums from the environment', () => {
    const cfg = loadConfig({
      KILN_PORT: '9090',
      KILN_OCI_RUNTIME: 'crun',
      REDIS_URL: 'redis://127.0.0.1:6390/2',
      KILN_INVOKER_METRICS_PORT: '9200',
      KILN_INVOKER_MEMORY_MB: '2048',
      KILN_PAUSE_GRACE_MS: '500',
    });
    expect(cfg.KILN_PORT).toBe(9090);
    expect(cfg.KILN_OCI_RUNTIME).toBe('crun');
    expect(cfg.REDIS_URL).toBe('redis://127.0.0.1:6390/2');
    expect(cfg.KILN_INVOKER_METRICS_PORT).toBe(9200);
    expect(cfg.KILN_INVOKER_MEMORY_MB).toBe(2048);
    expect(cfg.KILN_PAUSE_GRACE_MS).toBe(500);
  });

  it('resolves the state dir and derives the layers dir from it', () => {
    const cfg = loadConfig({ KILN_STATE_DIR: '/srv/kiln-state/' });
    expect(cfg.KILN_STATE_DIR).toBe('/srv/kiln-state');
    expect(cfg.KILN_LAYERS_DIR).toBe('/srv/kiln-state/layers');
  });

  it('makes a relative state dir absolute', () => {
    const cfg = loadConfig({ KILN_STATE_DIR: 'rel/state' });
    expect(cfg.KILN_STATE_DIR).toBe(path.resolve('rel/state'));
    expect(cfg.KILN_LAYERS_DIR).toBe(path.resolve('rel/state/layers'));
  });

  it('lets KILN_LAYERS_DIR be shared outside the state dir', () => {
    const cfg = loadConfig({ KILN_STATE_DIR: '/srv/a', KILN_LAYERS_DIR: '/srv/shared-layers' });
    expect(cfg.KILN_STATE_DIR).toBe('/srv/a');
    expect(cfg.KILN_LAYERS_DIR).toBe('/srv/shared-layers');
  });

  it('accepts port 0 (any free port)', () => {
    expect(loadConfig({ KILN_PORT: '0' }).KILN_PORT).toBe(0);
  });
});

describe('loadConfig errors', () => {
  const errorOf = (env: NodeJS.ProcessEnv): string => {
    try {
      loadConfig(env);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
  };

  it.each([
    ['KILN_PORT', 'abc'],
    ['KILN_PORT', '-1'],
    ['KILN_PORT', '80.5'],
    ['KILN_OCI_RUNTIME', 'docker'],
    ['REDIS_URL', 'not-a-url'],
    ['KILN_INVOKER_MEMORY_MB', 'lots'],
    ['KILN_INVOKER_METRICS_PORT', 'x'],
    ['KILN_PAUSE_GRACE_MS', 'soon'],
  ])('refuses %s=%s with a message naming the variable', (name, value) => {
    const msg = errorOf({ [name]: value });
    expect(msg).toContain(name);
  });

  it('names only the bad variables, each of them', () => {
    const msg = errorOf({ KILN_PORT: 'abc', KILN_OCI_RUNTIME: 'docker', KILN_STATE_DIR: '/tmp/x' });
    expect(msg).toContain('KILN_PORT');
    expect(msg).toContain('KILN_OCI_RUNTIME');
    expect(msg).not.toContain('KILN_STATE_DIR');
  });
});

describe('statePaths', () => {
  it('keeps everything inside the state dir', () => {
    const p = statePaths('/srv/k');
    expect(p.adminKey).toBe('/srv/k/admin-key');
    for (const v of Object.values(p)) expect(v === '/srv/k' || v.startsWith('/srv/k/')).toBe(true);
  });
});
