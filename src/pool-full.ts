import type { PoolCounts } from './db/driver.js';
import type { PoolShare } from './pool-share.js';

// What a drain says when it gives up its round trips at its limit
// (round-trip-limit.ts) while one of them still waited for a connection of a
// pool that stayed full: not the database's silence but the pool's size.
// Its transactional handlers take no more than the pool's size less one
// connection (PoolShare.enter), so the pool fills only with what pgdrain does
// not count: statements of a handler's own on the pool (pgDriver(yourPool)),
// other code sharing it, or on a pool of one (PGlite) a transaction holding
// the session. What the drain had not settled runs again once its leases end.

/** What the note reads, each when the limit fires. */
export interface PoolView {
  /** The driver's maxConnections: undefined, no pool to speak of. */
  max: number | undefined;
  /** The driver's count of its pool's connections (Driver.connections), if it has one. */
  counts: (() => PoolCounts | undefined) | undefined;
  /** The pool's share: the transactional handlers of all its drains connected. */
  share: PoolShare | undefined;
  /** This drain's own transactional handlers connected. */
  own(): number;
  /** Outcomes it has not settled (Settler.unsettled). */
  unsettled(): number;
  concurrency: number;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/**
 * The limit's message when the pool was full (every connection open and
 * taken, statements waiting; without counts, its transactional handlers
 * holding all of it), else undefined.
 */
export function poolFullNote(view: PoolView): (overrunMs: number, after: string) => string | undefined {
  return (overrunMs, after) => {
    const { max, share } = view;
    if (max === undefined) return undefined;
    const counts = view.counts?.();
    const handlers = share?.connected ?? 0;
    if (counts ? counts.open < max || counts.idle > 0 || counts.waiting === 0 : handlers < max) return undefined;
    const unsettled = view.unsettled();
    // Its outcomes wait for a settle (the final one, or one in flight that the drain's loop waits for), else a claim.
    const what = unsettled > 0 ? `settling ${plural(unsettled, "job's outcome", "jobs' outcomes")}` : 'its claims';
    const holders: string[] = [];
    if (handlers > 0) holders.push(`${plural(handlers, 'transactional handler')} (${view.own()} of this drain's)`);
    const others = counts === undefined ? 0 : Math.max(0, counts.open - handlers);
    if (others > 0) holders.push(`${plural(others, 'other statement')} (a handler's own on the pool, other code sharing it)`);
    const waiting = counts === undefined ? '' : `, ${plural(counts.waiting, 'statement')} waiting for one`;
    return `database unavailable: the pool (max ${max}) was full for ${what} until ${overrunMs} ms ${after}: `
      + `its connections held by ${holders.join(' and ')}${waiting}; `
      + `raise the pool's size or lower the drain's concurrency (${view.concurrency})`; // drain.ts adds what was not recorded
  };
}
