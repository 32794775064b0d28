// A container's own stdout and stderr (what its processes write outside kiln's per-call capture:
// child processes, crashes such as V8's "heap out of memory"). They come through a pipe, never
// to disk. Only the last few KiB are kept; past a total budget the pipe is no longer read, so a
// process writing gigabytes blocks on a full pipe instead of costing the host CPU or disk, and
// the container is marked as flooding (it is then replaced).
import { Readable } from 'node:stream';

const KEEP_BYTES = 8 * 1024;

export class OutputTail {
  private tail = '';
  private total = 0;
  flooded = false;

  constructor(private readonly budgetBytes = 1024 * 1024) {}

  follow(stream: Readable): void {
    stream.on('data', (chunk: Buffer) => {
      this.total += chunk.length;
      this.tail = (this.tail + chunk.toString('utf8')).slice(-KEEP_BYTES);
      if (this.total > this.budgetBytes) {
        this.flooded = true;
        stream.pause();
      }
    });
    stream.on('error', () => undefined);
  }

  text(): string {
    return this.tail;
  }
}
