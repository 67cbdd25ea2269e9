// Whether a starved drain (slot-wait.ts starve) serves a plain or batch task,
// for its once-more claim past transactional jobs that filled its last claim:
// read once, at its first release unstarted, a task queue.defineTask added
// since never counted, and a lingering drain (pgdrain serve) whose first
// release came while it served transactional tasks only starved at every later
// one, plain jobs behind them waiting for a connection they never need. The
// decision alone, on a SlotWait of its own: a whole drain's once-more claim
// depends on its slots then (pool-share-unstarted-head).
import { expect, it } from 'vitest';
import type { DrainStop } from '../src/drain-stop.js';
import { PoolShare } from '../src/pool-share.js';
import { SlotWait } from '../src/slot-wait.js';

it('a plain task defined after its first release unstarted counts at the next', async () => {
  const pool = new PoolShare();
  let plainTask = false;
  const slots = new SlotWait({ running: { size: 0 }, poolBound: false, share: pool, pool, poolCap: 1, connectionCap: 1, concurrency: 2,
    refillAt: 1, idle: undefined, lingerMs: 0, stopAt: Date.now() + 60_000, stopped: {} as DrainStop, servesPlain: () => plainTask });
  const never = () => new AbortController().signal;
  // A claim of 2 (full) brought hog and quick: the hog holds the pool's one connection for handlers, quick waits.
  slots.holds(1);
  expect(await slots.connect(never)).toBe(true);
  slots.holds(1);
  slots.starve(2, true, 2); // quick released unstarted, no plain task yet: starved
  expect(slots.short(2)).toBe(true);
  slots.disconnect(); // the hog returned: the claim that takes its connection ends it
  expect(slots.room(2)).toBe(1);
  slots.holds(1); // quick again, begun
  expect(await slots.connect(never)).toBe(true);
  // A plain task is defined; a claim of 2 (full) brings a hog and quick again, plain jobs behind them.
  plainTask = true;
  slots.holds(1);
  slots.holds(1);
  slots.starve(5, true, 2);
  // Unfixed: "no plain task", read at the first release, kept: starved, it claims nothing while the hog holds on.
  expect(slots.short(1)).toBe(false);
  expect(slots.room(1)).toBe(1);
});
