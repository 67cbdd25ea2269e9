// The connections of one driver's pool that transactional handlers hold,
// counted across every drain on it (`pgdrain serve`'s concurrent POST
// /drain, several drain() calls on one queue). Plain handlers and batch calls
// hold none: they borrow one per statement (ctx.publish, ctx.progress), as
// the drain's own claims and settles do. Each pool-bound drain keeps its
// handlers under the pool's size less one (drain-settings.ts); drains side by
// side must keep their transactional ones under it too, or the handlers past
// it wait for a connection with their timeout running, and are given back
// unrun (unstarted.ts). A drain given `concurrency` is not bound, but its transactional
// handlers count here too: the drains beside it that are bound leave their
// connections. So do those of any drain on the pool, of a task made
// transactional after its drain began too (queue.defineTask mid-drain).
// A pool is what holds the connections (Driver.pool), not the driver object:
// a copy of a driver, or a second driver over the same pg.Pool, shares it.
// The bound is each drain's own (its driver's maxConnections less one): drivers
// over one pool may say different ones ({ ...driver, maxConnections: 2 }).
// Whatever a drain's concurrency, its transactional handlers take a
// connection only under that bound too (enter): those past it wait here, their
// timeout running, so one connection stays for the claims and settles of
// every drain on the pool (and for ctx.progress, ctx.publish's statements).

export class PoolShare {
  /**
   * What the pool-bound drains keep under: the transactional handlers running on the pool (hold), over all its
   * drains, and the slots their claims in flight keep for the jobs they bring.
   */
  busy = 0;
  /**
   * Transactional handlers past enter(): each holds, or is being given, a connection of the pool. Never more than the
   * bound of the drain that let it in (its driver's maxConnections less one, at least one).
   */
  connected = 0;
  /** The wakes of the drains waiting for a free connection: one a drain's handler gives back may be theirs to use. */
  readonly wakes = new Set<() => void>();
  /** Transactional handlers waiting in enter(), first come first in: each goes once fewer than its cap are connected. */
  private readonly queued: { cap: number; go: () => void }[] = [];

  /** Transactional handlers waiting in enter(): they take the next connections given back. */
  get waiting(): number {
    return this.queued.length;
  }

  /** n slots taken (n < 0: given back). */
  add(n: number): void {
    this.busy += n;
    if (n < 0) for (const wake of this.wakes) wake();
  }

  /** A transactional handler began (1) or returned (-1): a slot of the pool-bound drains meanwhile (connected: enter). */
  hold(n: number): void {
    this.add(n);
  }

  /**
   * A transactional handler's turn to take a connection: true at once while fewer than cap handlers are connected,
   * else once enough leave (first come, first in); false when `gaveUp` fires first (its timeout, a cancel, the
   * drain's stop): it must not connect then. Each true is matched by one leave().
   */
  enter(cap: number, gaveUp: () => AbortSignal): boolean | Promise<boolean> {
    if (this.connected < cap && this.queued.length === 0) {
      this.connected++;
      return true;
    }
    const signal = gaveUp(); // made only here: a handler that goes at once makes no signal
    if (signal.aborted) return false;
    return new Promise<boolean>((resolve) => {
      const waiter = { cap, go: () => { signal.removeEventListener('abort', quit); resolve(true); } };
      const quit = () => {
        this.queued.splice(this.queued.indexOf(waiter), 1);
        resolve(false);
        this.admit(); // one behind it may go now
      };
      signal.addEventListener('abort', quit, { once: true });
      this.queued.push(waiter);
      this.admit(); // those ahead may wait under a lower cap
    });
  }

  /** A handler enter() let in has given its connection back. */
  leave(): void {
    this.connected--;
    this.admit();
  }

  /** Lets in the queued handlers whose cap is above the connected count, in order: a lower cap behind does not hold up a higher one. */
  private admit(): void {
    for (let i = 0; i < this.queued.length;) {
      const waiter = this.queued[i]!;
      if (this.connected >= waiter.cap) { i++; continue; }
      this.connected++;
      this.queued.splice(i, 1);
      waiter.go();
    }
  }
}

const shares = new WeakMap<object, PoolShare>();

/** The share of a driver's pool (the driver itself when it names none). */
export function poolShare(driver: { readonly pool?: object | undefined }): PoolShare {
  const pool = typeof driver.pool === 'object' && driver.pool !== null ? driver.pool : driver; // a WeakMap key
  let share = shares.get(pool);
  if (!share) shares.set(pool, share = new PoolShare());
  return share;
}
