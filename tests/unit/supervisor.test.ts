// The supervisor restarts a dead process at once, and backs off from one that keeps dying.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Logger } from '../../common/log';
import { Supervised } from '../../platform/supervisor';

function recordingLog(): { log: Logger; delays: number[] } {
  const delays: number[] = [];
  const log = { error: (o: { restartInMs?: number }) => o.restartInMs !== undefined && delays.push(o.restartInMs) } as unknown as Logger;
  return { log, delays };
}

it('a process that keeps dying right after it starts is restarted after doubling delays', async () => {
  const { log, delays } = recordingLog();
  const s = new Supervised('false', '/bin/false', [], log, { restartDelayMs: 20 });
  await s.start();
  const deadline = Date.now() + 10_000;
  while (delays.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await s.stop(1000);
  expect(delays.slice(0, 5)).toEqual([20, 40, 80, 160, 320]);
});

it('after a process lived longer than 5 s, its next restart comes after the base delay again', async () => {
  const { log, delays } = recordingLog();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-supervisor-'));
  const count = path.join(dir, 'runs');
  // Dies at once twice, then lives 5.5 s before dying.
  const script = `n=$(cat ${count} 2>/dev/null || echo 0); echo $((n + 1)) > ${count}; [ "$n" -ge 2 ] && sleep 5.5; exit 1`;
  const s = new Supervised('flaky', '/bin/sh', ['-c', script], log, { restartDelayMs: 20 });
  try {
    await s.start();
    const deadline = Date.now() + 15_000;
    while (delays.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(delays.slice(0, 3)).toEqual([20, 40, 20]);
  } finally {
    await s.stop(1000);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);

it('stop() ends the process for good: no restart', async () => {
  const { log, delays } = recordingLog();
  const s = new Supervised('sleep', '/bin/sleep', ['30'], log, { restartDelayMs: 20 });
  const child = await s.start();
  await s.stop(1000);
  await new Promise((r) => setTimeout(r, 100));
  expect(child.signalCode).toBe('SIGTERM');
  expect(delays).toEqual([]);
});
