import type { DrainStop } from './drain-stop.js';
import { waitUntil, type IdleWait, type Wake } from './idle-wait.js';
import type { PoolShare } from './pool-share.js';

// A drain's slots for handlers and its wait for one (drain.ts): how many jobs
// it may start now, and how it waits when too few are free. A slot is one of
// its concurrency; pool-bound (a transactional task, concurrency left to its
// pool's size: drain-settings.ts), it is also kept under its pool's size less
// one with the transactional handlers of every drain on it (pool-share.ts):
// plain handlers and batch calls take a slot of their own drain only.

/** What the slots are counted from: the drain's settings and its running jobs. */
export interface SlotSettings {
  /** Its running jobs (settled ones leave it, their handler returned or not). */
  running: { readonly size: number };
  /** The pool's size bounds its concurrency: a handler that ran on past its timeout still holds a connection. */
  poolBound: boolean;
  /** Its pool's share, for any transactional drain on a pool: a drain given concurrency counts its claims there too. */
  share: PoolShare | undefined;
  /** Its pool's share whatever its tasks (a pool of known size): its transactional handlers hold connections there. */
  pool: PoolShare | undefined;
  /** Pool-bound, the handlers of all the share's drains it keeps under: its driver's maxConnections less one. */
  poolCap: number;
  /** Whatever its concurrency, the most transactional handlers of its pool's drains it lets take a connection (connect). */
  connectionCap: number;
  concurrency: number;
  /** With some of its own running, it claims again once this many slots are free. */
  refillAt: number;
  /** Lingering (DrainOptions.lingerMs), it waits for NOTIFYs and polls. */
  idle: IdleWait | undefined;
  lingerMs: number;
  /** No job runs past it: the deadline less the settle margin. */
  stopAt: number;
  stopped: DrainStop;
  /** Whether its tasks include one not transactional (plain, batch) now: asked at a release unstarted, never per claim (starve). */
  servesPlain(): boolean;
}

export class SlotWait {
  /** Jobs whose handler call has not returned, settled or not. */
  private handlers = 0;
  private readonly share: PoolShare | undefined;
  /** Pool-bound, its pool's share: it keeps under the pool's size less one with the other drains. */
  private readonly bound: PoolShare | undefined;
  /** In wait(): pool-bound, a handler of its own that returns wakes it (its slot is free only then). */
  private waiting = false;
  /** In wait() with none of its own jobs running: the wait ends itself at stopAt, for a last look, so its deadline's timer leaves it. */
  waitsAlone = false;
  /** A job of its own was released unstarted (starve): it claims no more than its pool has connections free. */
  private starved = false;
  /** Transactional handlers begun (holds), and at its last release unstarted that and its claims' jobs then (starve). */
  private begun = 0;
  private begunAt = 0;
  private claimedAt = 0;
  /** At its last release unstarted it went on claiming for want of proof that no plain job waits (starve): once in a row. */
  private probed = false;
  /** Starved after such a claim that brought only transactional jobs, all it asked for: more free slots may reach past them. */
  private wider = Infinity;

  constructor(private readonly s: SlotSettings) {
    this.share = s.share;
    this.bound = s.poolBound ? s.share : undefined;
  }

  /**
   * n handler calls began (n < 0: returned): slots of its own only, as they hold no connection but a
   * transactional handler's (holds). One that returns after its job ended (its timeout) wakes the drain's wait.
   */
  add(n: number): void {
    this.handlers += n;
    if (n < 0 && this.waiting) this.s.stopped.wake();
  }

  /**
   * A transactional handler began (1) or returned (-1): it holds a connection of its pool meanwhile, counted in
   * its pool's share (PoolShare.hold), whether the drain began with a transactional task or not (a task lookup
   * may find one defined since); one given back wakes the share's waiters.
   */
  holds(n: number): void {
    if (n > 0) this.begun++;
    this.s.pool?.hold(n);
  }

  /** Its own transactional handlers connect() let in, not yet given back: of its pool's share's connected. */
  connected = 0;

  /**
   * A transactional handler's turn to take a connection of its pool, under connectionCap over every drain on it
   * (PoolShare.enter): one stays for the claims and settles. False: gaveUp's signal fired first (it must not connect).
   */
  async connect(gaveUp: () => AbortSignal): Promise<boolean> {
    const pool = this.s.pool;
    if (pool === undefined) return true;
    if (!await pool.enter(this.s.connectionCap, gaveUp)) return false;
    this.connected++;
    return true;
  }

  /** A handler connect() let in gave its connection back. */
  disconnect(): void {
    if (this.s.pool === undefined) return;
    this.connected--;
    this.s.pool.leave();
  }

  /**
   * A job of its own was released unstarted, no connection free in time: until a claim of its takes a connection
   * come free (room), it claims no more jobs than its pool has connections free for transactional handlers (under
   * connectionCap, less those waiting for one), and with none free waits for one (a handler's return wakes it:
   * PoolShare.add), else it would claim the job (or one like it) again only to release it again. Not when its claims
   * since its last release unstarted brought jobs that need no connection (plain, batch: more jobs, `claimed` counts
   * all, than transactional handlers begun): its claims cannot choose tasks, and those would wait for a connection
   * they never take. Nor, once in a row, when its last claim brought all it asked for (full: ClaimTally) and it serves a
   * plain or batch task now (asked here, at a release, not per claim: queue.defineTask may add one since the last): the
   * transactional jobs first in the queue may have filled it, plain ones waiting behind (its next claim passes those it holds; the released come
   * back with it, to be released again if no connection frees). Its last claim, not all since: a lingering drain's
   * claims of an empty queue, before the jobs came, prove nothing of what waits behind them now. A release of no later
   * claim decides nothing. Never on a pool of unknown size (connect waits for none).
   */
  starve(claimed: number, full: boolean, asked: number): void {
    if (claimed === this.claimedAt) return; // another of the same claims: as the first of them decided
    const plain = claimed - this.claimedAt > this.begun - this.begunAt;
    this.claimedAt = claimed;
    this.begunAt = this.begun;
    // That claim, once more, was full too: starved, but more slots than it asked for (a hung job's timeout frees its
    // own) reach past the jobs it brought, which come back first: one more claim then (room), each of more slots.
    this.wider = this.probed && !plain && full ? asked : Infinity;
    this.probed = !plain && full && !this.probed && this.s.servesPlain();
    this.starved = this.s.pool !== undefined && !plain && !this.probed;
  }

  /** Starved: the connections its pool has free for transactional handlers (none waiting for them). */
  private connectionsFree(): number {
    const pool = this.s.pool!;
    return this.s.connectionCap - pool.connected - pool.waiting;
  }

  /** n slots taken while a claim is out (n < 0: its answer came, each job it started holds its own): other drains' claims leave them. */
  claiming(n: number): void {
    this.share?.add(n);
  }

  /** Slots in use: pool-bound, its handler calls not returned (a transactional one past its timeout holds on); else its running jobs. */
  private busy(): number {
    return this.bound ? this.handlers : this.s.running.size;
  }

  /** Slots free now: pool-bound, no more than its pool's other drains leave. */
  free(): number {
    const free = this.s.concurrency - this.busy();
    return this.bound ? Math.min(free, this.s.poolCap - this.bound.busy) : free;
  }

  /**
   * Whether it waits before its next claim: with some of its own running,
   * until refillAt slots are free; with none, pool-bound, while its pool's
   * other drains hold every slot (one free will do); starved (starve), also
   * while its pool has no connection free for a transactional handler.
   */
  short(free: number): boolean {
    const busy = this.busy();
    return (busy > 0 || (this.bound?.busy ?? 0) > 0) && free < (busy > 0 ? this.s.refillAt : 1)
      || (this.starved && this.connectionsFree() <= 0 && free <= this.wider);
  }

  /**
   * Waits for slots, as short(free) said. A change ends the wait: a job of
   * its own ends, a connection another drain gives back (its wake is in the
   * share's only now: an idle drain woken would claim), a stop. A drain with
   * lingerMs also claims on a NOTIFY or a poll while some slots are free
   * (idle.wait). With none free, a drain with none of its own jobs running
   * (its pool's other drains hold every slot; a hung handler its own), or
   * idle (idleSince: since when), waits deaf to them (waitUntil: a NOTIFY
   * heard answers idle.wait at once, a loop until the next claim) until
   * stopAt at most, or its linger's end while idle: 'until', and drain.ts
   * looks once more with no budget (its deadline's timer leaves it:
   * waitsAlone). Resolves 'changed' for a change.
   */
  async wait(free: number, idleSince: number | undefined): Promise<Wake> {
    const { idle, stopped, stopAt } = this.s;
    const until = idleSince === undefined ? stopAt : Math.min(idleSince + this.s.lingerMs, stopAt);
    // Starved with no connection free, a NOTIFY is no reason to claim: a connection given back is.
    const noConnection = this.starved && this.connectionsFree() <= 0;
    const wakes = (this.bound ?? (this.starved ? this.s.pool : undefined))?.wakes;
    wakes?.add(stopped.wake);
    this.waiting = this.bound !== undefined;
    try {
      if (idle && free > 0 && !noConnection) return await idle.wait(until, stopped.changed());
      this.waitsAlone = this.s.running.size === 0;
      if (this.waitsAlone || idleSince !== undefined) return await waitUntil(until, stopped.changed());
      await stopped.changed();
      return 'changed';
    } finally {
      this.waitsAlone = false;
      this.waiting = false;
      wakes?.delete(stopped.wake);
    }
  }

  /** The slots it claims with, read again after the settler's take(): drains woken together each read the same free ones before it. */
  room(free: number): number {
    const room = this.bound ? Math.min(free, this.s.poolCap - this.bound.busy) : free;
    if (!this.starved) return room;
    // Starved: no more than the connections free; a claim that takes one ends it (those jobs start, none waits).
    const capped = Math.min(room, this.connectionsFree());
    if (capped > 0) this.starved = false;
    else if (room > this.wider) { // more slots than its last claim, full of transactional jobs: once more, past them
      this.starved = false;
      this.probed = true;
      this.wider = Infinity;
      return room;
    }
    return capped;
  }
}
