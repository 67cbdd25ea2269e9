import type { PoolShare } from './pool-share.js';

// A drain's last look (drain.ts): one claim with no budget, which takes no job
// and needs no slot, only to count the due jobs the drain leaves (its report's
// skipped; stoppedBy 'deadline' when any). It is owed once per drain, when its
// time for jobs ran out before a claim could count them: no budget from its
// first claim on (a Lambda with under settleMarginMs left), a wait for a slot
// that ran to stopAt, a linger that ran to its end.
//
// Being only for counting, it never waits for a connection: while handlers
// (its own pool's, over every drain on it: pool-share.ts) hold every
// connection of the pool, none would come before they return, and the look
// would hold the drain past its deadline until database_unavailable. The drain
// then stops without it: skipped stays as its last claim counted (0 before
// any). The rule covers a pool of one (PGlite's session) while another drain's
// handler runs: on a larger pool the handlers leave one connection
// (PoolShare.enter), whatever their drain's concurrency.

/** What the look reads: its pool's share of handler connections and its size, and the drain's wait for a slot. */
export interface LookSettings {
  /** Its pool's share (a pool with a bound, whatever the drain's tasks), else undefined: the look goes. */
  share: PoolShare | undefined;
  /** Its driver's maxConnections: the connections of the pool. */
  poolSize: number | undefined;
  /** Whether the drain waits for a slot with none of its own jobs running: that wait ends itself at stopAt, for the look. */
  waitsAlone(): boolean;
}

export class LastLook {
  private state: 'no' | 'due' | 'spent' = 'no'; // spent: sent, or given up for want of a connection

  constructor(private readonly s: LookSettings) {}

  /** The drain's next claim is the look (no budget: no job taken, no slot needed). */
  get due(): boolean {
    return this.state === 'due';
  }

  /** Its time for jobs ran out before a claim counted what is due: the next claim is the look. False once it was owed before. */
  owe(): boolean {
    if (this.state !== 'no') return false;
    this.state = 'due';
    return true;
  }

  /**
   * At the claim that is the look: whether it may go, a connection of its
   * pool being left by the handlers (connected: let in by PoolShare.enter) (then sent: never again, even rolled back
   * whole, its outcomes going with the final settle). False: the drain stops without it.
   */
  send(): boolean {
    this.state = 'spent';
    const { share, poolSize } = this.s;
    return share === undefined || poolSize === undefined || share.connected < poolSize;
  }

  /** Whether the deadline's timer leaves the stop to the drain's loop, which owes or sends the look (drain-stop.ts). */
  holdsStop(): boolean {
    return this.state === 'due' || this.s.waitsAlone();
  }
}
