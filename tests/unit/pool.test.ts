it('probe', async () => {
  const seen: unknown[] = [];
  const h = (e: unknown) => seen.push(e);
  process.on('unhandledRejection', h);
  void Promise.reject(new Error('x'));
  await new Promise((r) => setTimeout(r, 10));
  process.off('unhandledRejection', h);
  expect(seen).toHaveLength(1);
});
