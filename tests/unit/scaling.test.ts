import { recommendedInvokers } from '../../gateway/scaling';

const inv = (usedMB: number, capacityMB = 1000, concurrency = 10) => ({ usedBytes: usedMB * 2 ** 20, capacityBytes: capacityMB * 2 ** 20, concurrency });

describe('recommendedInvokers', () => {
  it('is at least one, even with nothing to do or no invoker alive', () => {
    expect(recommendedInvokers({}, [])).toBe(1);
    expect(recommendedInvokers({ waiting: 0, active: 0 }, [inv(0)])).toBe(1);
  });
  it('gives every running or waiting job a slot', () => {
    expect(recommendedInvokers({ waiting: 15, active: 10 }, [inv(0)])).toBe(3);
    expect(recommendedInvokers({ waiting: 5, active: 5, delayed: 1 }, [inv(0), inv(0)])).toBe(2);
    expect(recommendedInvokers({ waiting: 64 }, [], 32)).toBe(2);
  });
  it('keeps memory use at or below 80 % of capacity', () => {
    expect(recommendedInvokers({}, [inv(800), inv(900)])).toBe(3); // 1700 / 800
    expect(recommendedInvokers({}, [inv(700)])).toBe(1);
  });
});
