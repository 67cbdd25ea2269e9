// Timeouts (src/timeouts.ts): one timer per end time for many jobs. A group
// lets the items that ended go once they are half of what it holds, so one
// slow job does not keep its claim's other jobs (their bodies) in memory
// until it ends; the items still live expire at their end.
import { describe, expect, it, vi } from 'vitest';
import { Timeouts, type Expiring } from '../src/timeouts.js';

class Item implements Expiring {
  ended = false;
  expired = false;
  expire(): void {
    if (!this.ended) this.expired = true;
  }
}

describe('a timeout group', () => {
  it('lets ended items go while one runs on, and expires that one at its end', async () => {
    const timeouts = new Timeouts();
    const end = Date.now() + 200;
    const items = Array.from({ length: 500 }, () => new Item());
    const group = items.map((item) => timeouts.at(end, item))[0]!;
    for (const item of items.slice(1)) {
      item.ended = true;
      timeouts.clear(group);
    }
    expect(group.live).toBe(1);
    expect(group.items.length).toBeLessThan(16); // not the 499 that ended
    expect(group.items).toContain(items[0]);
    await vi.waitFor(() => expect(items[0]!.expired).toBe(true), { timeout: 10_000, interval: 20 });
    expect(items.slice(1).some((item) => item.expired)).toBe(false);
  });
});
