import type { Queryable } from './db/driver.js';
import { outcomeArrays, SETTLE_ARRAYS_SQL, type Outcome, type SettleAnswer, type SettleCounts, type SettleListener } from './outcome-arrays.js';
import { pauseUntil, type Pause } from './settle-pause.js';
import { endsSerialKey, MAX_SERIAL_KEYS } from './serial-key-ends.js';
import { tellSettled } from './settle-told.js';

const ENDED_AS_SUCCESS_SQL =
  "select 1 from jobs.job where job_id = $1 and attempts = $2 and worker_id = $3 and status = 'success'";

/** How long a settle waits to try again after its call failed. */
const RETRY_AFTER_ERROR_MS = 1000;

/**
 * Gathers outcomes for jobs.settle. Most ride along with the drain's next
 * claim (take → claim_json → count); what waits longer than flushIntervalMs
 * (the drain is busy with slow handlers) goes in a settle call of its own,
 * one in flight at a time. A failed call keeps its outcomes for the next try:
 * settling again is harmless, each outcome being bound to its attempt and to
 * this drain's worker id (a release gives the attempt number back to the
 * next delivery, which another drain may hold by then); one that an earlier
 * try applied (its reply lost) is counted as what it did, not as stale.
 * Outcomes that end a serial-key job go at most MAX_SERIAL_KEYS per
 * statement; the rest wait in `keyedOut` and go in statements back to back
 * (a claim waits for them: see take()), and close() sends as many
 * statements as they need.
 */
export class Settler {
  readonly totals: SettleCounts = { succeeded: 0, failed: 0, cancelled: 0, retried: 0, released: 0, stale: 0 };
  private buffer: Outcome[] = [];
  /** Claimed serial-key jobs whose outcome has not come yet: id → maxRetries. */
  private readonly keyed = new Map<string, number>();
  /** Outcomes that end a serial-key job (take its key's lock), oldest first. */
  private keyedOut: Outcome[] = [];
  /** The same outcomes, to tell them apart in a batch put back; made with the first. */
  private takesKey: WeakSet<Outcome> | undefined;
  private inFlight: Promise<void> | undefined;
  /** The outcomes of the statement in flight. */
  private sending = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private lastError: unknown;
  /** close() has begun: it settles what is left itself, so no timer starts. */
  private closing = false;
  /** sendSoon() came and what it asked for has not gone yet: the next statement goes as the one in flight ends, not flushIntervalMs after. */
  private soon = false;
  /** What the last take() handed to a claim was asked for by sendSoon(). */
  private tookSoon = false;

  /** told: of each outcome its settle ended cancelled (a cancel requested while the job ran) or found stale. */
  constructor(private readonly db: Queryable, private readonly flushIntervalMs: number, private readonly workerId: string,
              private readonly pause: Pause = pauseUntil(), private readonly told?: SettleListener) {}

  /** A claim's serial-key jobs (ClaimedColumns.keyed), before any of their outcomes is added. */
  claimedKeyed(ids: readonly string[], maxRetries: readonly number[]): void {
    for (let i = 0; i < ids.length; i++) this.keyed.set(ids[i]!, maxRetries[i]!);
  }

  /** A claimed job settled by other means (in its handler's transaction). */
  forget(id: string): void {
    if (this.keyed.size > 0) this.keyed.delete(id);
  }

  add(outcome: Outcome): void {
    if (this.keyed.size > 0 && this.endsKeyed(outcome)) {
      this.keyedOut.push(outcome);
      (this.takesKey ??= new WeakSet()).add(outcome);
    } else {
      this.buffer.push(outcome);
    }
    this.arm();
  }

  /**
   * What is buffered goes now, not flushIntervalMs later (or as soon as the
   * statement in flight ends): what a job's timer ended, a margin before its
   * lease's end (Timeouts' fired), and a job released unstarted ahead of it
   * (unstarted.ts releaseAhead), must land before that end. In a later
   * task: a claim the drain sends meanwhile (a slot freed) carries them, with
   * no statement of their own; one not sent after all (untake) asks again.
   */
  sendSoon(): void {
    if (this.closing) return;
    this.soon = true;
    if (this.inFlight) return; // kick() goes again as it ends
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, 0);
  }

  /**
   * Whether this delivery ended as a success (jobs.job: its attempt, claimed
   * by this worker): a transactional handler's ack whose COMMIT failed may
   * have landed, its answer lost with the connection.
   */
  async endedAsSuccess(id: string, attempt: number): Promise<boolean> {
    const { rows } = await this.db.query(ENDED_AS_SUCCESS_SQL, [id, attempt, this.workerId]);
    return rows.length > 0;
  }

  /** Outcomes not yet settled: buffered, or in a statement still in flight. */
  unsettled(): number {
    return this.buffer.length + this.keyedOut.length + this.sending;
  }

  /** The outcomes still buffered: after a close() that threw, those it could not settle. */
  left(): Outcome[] {
    return this.buffer.concat(this.keyedOut);
  }

  /** Whether outcomes wait to be settled. */
  hasBuffered(): boolean {
    return this.buffer.length > 0 || this.keyedOut.length > 0;
  }

  /**
   * Hands the buffered outcomes to a claim that settles them, after any
   * settle in flight. Serial-key ends held back past what one statement
   * carries are settled first, back to back: the claim expires passed
   * leases, and would otherwise expire this drain's own finished jobs.
   */
  async take(): Promise<Outcome[]> {
    for (;;) {
      while (this.inFlight) await this.inFlight;
      if (this.keyedOut.length <= MAX_SERIAL_KEYS || this.lastError !== undefined) break;
      this.kick();
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    this.tookSoon = this.soon; // the claim carries them
    this.soon = false;
    const batch = this.next();
    // After a failed settle some may still wait: within a second, should no claim come first.
    this.arm();
    return batch;
  }

  /**
   * What a settle did (its answer's counts); batch: the outcomes it took,
   * whose deliveries (id:attempt) its cancelled_ids, never_started_ids and stale_ids name. Each
   * comes only when there are any: a batch of acks that all applied reads
   * nothing more (and the listener's answered, nothing while it waits on none).
   */
  count(counts: SettleAnswer | null | undefined, batch?: readonly Outcome[]): void {
    if (!counts) return;
    for (const key of Object.keys(this.totals) as (keyof SettleCounts)[]) this.totals[key] += Number(counts[key] ?? 0);
    if (batch && this.told) tellSettled(this.told, counts, batch);
  }

  /** Outcomes take() handed to a claim that was not sent after all (it waits), or that failed: the timer settles them meanwhile. */
  untake(batch: Outcome[]): void {
    this.putBack(batch);
    if (this.tookSoon) this.sendSoon();
    else this.arm();
  }

  private putBack(batch: Outcome[]): void {
    const takesKey = this.takesKey;
    if (takesKey === undefined) {
      this.buffer = batch.concat(this.buffer);
      return;
    }
    const keyed = batch.filter((o) => takesKey.has(o));
    this.buffer = batch.filter((o) => !takesKey.has(o)).concat(this.buffer);
    this.keyedOut = keyed.concat(this.keyedOut);
  }

  /** What the next statement settles: every other outcome, and up to MAX_SERIAL_KEYS that end a serial-key job. */
  private next(): Outcome[] {
    const batch = this.buffer;
    this.buffer = [];
    if (this.keyedOut.length > 0) {
      const n = Math.min(MAX_SERIAL_KEYS, this.keyedOut.length);
      for (let i = 0; i < n; i++) batch.push(this.keyedOut[i]!);
      this.keyedOut = this.keyedOut.slice(n);
    }
    return batch;
  }

  /** Whether the outcome of a claimed job ends it while it holds a serial key (serial-key-ends.ts); asked once per outcome. */
  private endsKeyed(o: Outcome): boolean {
    const maxRetries = this.keyed.get(o.id);
    if (maxRetries === undefined) return false;
    this.keyed.delete(o.id);
    return endsSerialKey(o, maxRetries);
  }

  /**
   * Settles everything buffered, in as many statements as the outcomes held
   * back need; throws the last database error after `attempts` failed calls
   * in a row. Between two tries it pauses RETRY_AFTER_ERROR_MS,
   * as the flush path does, so a database that restarts or drops its
   * connections has time to come back; a pause cut short (the drain's
   * round-trip limit) ends the tries there. What stays unsettled runs again
   * once its leases end.
   */
  async close(attempts = 3): Promise<void> {
    this.closing = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    let failures = 0; // in a row: outcomes held back may need several statements
    while (this.inFlight || this.hasBuffered()) {
      if (!this.inFlight) this.kick();
      await this.inFlight;
      if (this.lastError === undefined) {
        failures = 0;
        continue;
      }
      if (++failures >= attempts || !await this.pause(RETRY_AFTER_ERROR_MS)) throw this.lastError;
    }
  }

  /**
   * Starts the flush timer for what is buffered, unless one runs or a settle
   * is in flight; that settle arms it again as it ends, so an outcome added
   * meanwhile (or put back by a failed call) still goes within about
   * flushIntervalMs of it.
   */
  private arm(): void {
    if (this.timer || this.inFlight || this.closing || !this.hasBuffered()) return;
    // After a failed call, try again about once a second rather than at every interval.
    const wait = this.lastError === undefined ? this.flushIntervalMs : Math.max(this.flushIntervalMs, RETRY_AFTER_ERROR_MS);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, wait);
  }

  private kick(): void {
    if (this.inFlight || !this.hasBuffered()) return;
    this.soon = false;
    const batch = this.next();
    this.sending = batch.length;
    this.inFlight = this.send(batch).finally(() => {
      this.inFlight = undefined;
      this.sending = 0;
      // Serial-key ends still held back go at once, not after flushIntervalMs:
      // each statement waits only for its share of the lock table.
      // So does what sendSoon() asked for.
      if ((this.keyedOut.length > 0 || this.soon) && this.lastError === undefined && !this.closing) this.kick();
      else this.arm();
    });
  }

  private async send(batch: Outcome[]): Promise<void> {
    try {
      const { rows } = await this.db.query<{ r: SettleAnswer }>(SETTLE_ARRAYS_SQL, [...outcomeArrays(batch), this.workerId]);
      this.count(rows[0]!.r, batch);
      this.lastError = undefined;
    } catch (error) {
      this.lastError = error;
      this.putBack(batch);
    }
  }
}
