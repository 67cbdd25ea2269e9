/** What a timeout ends: a running job (run-handler.ts), a batch call. */
export interface Expiring {
  /** Called at its end unless cleared before; may still come after clear (then it must do nothing). */
  expire(): void;
  /** True once it ended (its clear() came): a group lets it go. */
  readonly ended: boolean;
}

/** The items that end at one time, under one timer: what Timeouts.at answers, for clear. */
export interface TimeoutGroup {
  readonly end: number;
  /** Stops its timer (timerAt's). */
  cancel: () => void;
  items: Expiring[];
  live: number;
}

/**
 * Job timeouts with one timer per distinct end time rather than one per job:
 * a batch's jobs share their claim time and mostly their timeout, so a batch
 * of 500 costs one timer, not 500 (a measurable share of a fast drain's CPU).
 * A group counts its live items rather than keeping them in a set (adding
 * to and deleting from a set per job cost more than the rest of a timeout),
 * and drops the ended ones once they are half of what it holds: one slow
 * job must not keep its claim's other jobs (their bodies) until it ends.
 */
export class Timeouts {
  private readonly groups = new Map<number, TimeoutGroup>();

  /** fired: after a group's items expired (drain.ts: the settler sends their nacks now, within their leases). */
  constructor(private readonly fired?: () => void) {}

  /** Calls item.expire() at `end` (epoch ms) unless clear() of what it answers comes first, once per at(). */
  at(end: number, item: Expiring): TimeoutGroup {
    let group = this.groups.get(end);
    if (!group) {
      // timerAt: a plain setTimeout fires at once for an end past 24.8 days.
      const g: TimeoutGroup = { end, items: [], live: 0, cancel: timerAt(end, () => {
        this.groups.delete(end);
        for (const item of g.items) item.expire();
        this.fired?.();
      }) };
      this.groups.set(end, group = g);
    }
    group.items.push(item);
    group.live++;
    return group;
  }

  /** One item of the group is done: its expire() is no longer needed (the timer goes once none is left). */
  clear(group: TimeoutGroup): void {
    if (--group.live > 0) {
      if (group.items.length >= 16 && group.live * 2 <= group.items.length) group.items = group.items.filter((i) => !i.ended);
      return;
    }
    group.cancel();
    if (this.groups.get(group.end) === group) this.groups.delete(group.end);
  }

  /**
   * Moves a live item of group to a new end (a lease extended): taken out of
   * group's items, so its old timer no longer calls it. Answers its new group.
   * A search of the group: only extensions pay for it.
   */
  move(group: TimeoutGroup, end: number, item: Expiring): TimeoutGroup {
    if (end === group.end) return group;
    const i = group.items.indexOf(item);
    if (i >= 0) group.items.splice(i, 1);
    this.clear(group);
    return this.at(end, item);
  }
}

/**
 * How long before its lease's end a job's timer fires: its nack (or
 * release) is sent then (Timeouts' fired) and lands while the lease holds.
 * Made at the lease's end, it came after it, and another consumer's expiry
 * (another drain's claim, jobs.maintain) took the job back first: its
 * last_error said its worker stopped, its nack came stale. A tenth of a
 * short timeout: the handler keeps most of its time.
 */
const LEASE_MARGIN_MS = 500;

/**
 * When the timer of a job whose lease began at leaseStart (epoch ms, the
 * drain's clock: its claim's or extension's sending, before the database's
 * own now) ends it: its timeout less LEASE_MARGIN_MS, or a tenth of it.
 */
export function timerEnd(leaseStart: number, timeoutSeconds: number): number {
  const ms = timeoutSeconds * 1000;
  return leaseStart + ms - Math.min(LEASE_MARGIN_MS, ms / 10);
}

/**
 * When a heartbeat of `seconds` (a task's heartbeatSeconds; the first beat's:
 * the job's timeout when shorter) sends its beat, in ms after the lease's
 * start: half the lease before the timer's end (timerEnd), so that the beat
 * has half the lease to be answered, as it had when the timer ended with the
 * lease (a beat answered after the timer fired is too late: the job is
 * nacked). Half of what the timer leaves, (n − margin)/2, would leave it
 * less: 0.45 s of a 1 s heartbeat, not 0.5 s. The cost: beats a margin
 * sooner, a 1 s heartbeat's every 0.4 s (not 0.5 s), a 60 s one's every 29.5 s.
 */
export function beatDelay(seconds: number): number {
  return timerEnd(0, seconds) - seconds * 500;
}

/**
 * When a heartbeat sends its next beat (epoch ms), the last one sent at
 * sentAt: beatDelay after it, if it extended the lease. If not (a database
 * error, or it came while a transactional handler waited for its connection:
 * no statement), sooner when the timer's end (epoch ms) comes first: after
 * half of what that end leaves, so a beat still has time to land; a whole
 * beat on, past that end, a short first lease (the job's timeout) ran out
 * with no beat tried again.
 */
export function nextBeat(sentAt: number, seconds: number, extended: boolean, end: number): number {
  const at = sentAt + beatDelay(seconds);
  if (extended) return at;
  const now = Date.now();
  return Math.min(at, now + (end - now) / 2);
}

/** setTimeout's longest delay: a longer one fires at once, with a warning. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/** Calls fn at `at` (epoch ms), even past setTimeout's 24.8-day range; returns what cancels it. */
export function timerAt(at: number, fn: () => void): () => void {
  let timer: ReturnType<typeof setTimeout>;
  const arm = () => {
    const delay = at - Date.now();
    timer = delay > MAX_DELAY_MS ? setTimeout(arm, MAX_DELAY_MS) : setTimeout(fn, Math.max(0, delay));
  };
  arm();
  return () => clearTimeout(timer);
}
