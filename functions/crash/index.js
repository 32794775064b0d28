// Misbehaves on request, for the failure-path tests: event.mode 'throw' | 'oom' | 'hang'.
const tick = () => new Promise((resolve) => setImmediate(resolve));

exports.handler = async (event) => {
  const mode = event && event.mode;
  if (mode === 'throw') throw new Error('boom');
  if (mode === 'oom') {
    const hog = [];
    for (;;) {
      hog.push(Buffer.alloc(10 * 2 ** 20, 1));
      await tick();
    }
  }
  if (mode === 'hang') for (;;);
  console.log('crash: a line on stdout');
  console.error('crash: a line on stderr');
  return { ok: true };
};
