// One job's handler, run: what it returns, throws or rejects with becomes the outcome drain() settles.
import { heartbeatOf, isTransactional, LookupThrew, type Found } from './define-task.js';
import { inTransaction } from './drain-transactional.js';
import { DrainJobContext, extendLeaseOf, LazySignal, leaseSeconds, type LeaseHolder } from './job-context.js';
import { resultJson } from './result-json.js';
import type { Outcome } from './outcome-arrays.js';
import type { RunHost } from './run-host.js';
import { thrownOutcome } from './thrown-outcome.js';
import { beatDelay, nextBeat, timerEnd, type TimeoutGroup } from './timeouts.js';
import type { Job } from './types.js';
import { interrupted, LEASE_LOST, type Running } from './wind-down.js';
import { releaseAhead, releaseUnstarted } from './unstarted.js';

/** The reason a handler's signal gives once its job is settled: one shared instance, no stack per job. */
const SETTLED = new Error('job settled');

/**
 * One started job: its entry in host.running and its timeout (host.timeouts
 * calls expire). Made per job on a drain's hot path, so a class: its
 * methods are shared, where closures would be made for every job.
 */
export class JobRun implements Running, LeaseHolder {
  readonly signal = new LazySignal();
  /** Its entry left host.running (settled, timed out, released): its timeout group lets it go. */
  ended = false;
  waitsForConnection = false; // its transactional handler waits for a connection, unbegun: released at its end (unstarted.ts)
  private timeout: TimeoutGroup;
  private ctx: DrainJobContext | undefined;
  private began = 0;
  /** The lease its handler last extended to (ctx.extendLease), if it did. */
  private extended: Date | undefined;
  /** Its heartbeat's next beat (a task's heartbeatSeconds), if it has one: cleared by finish() or leaseLost(). */
  private beat: ReturnType<typeof setTimeout> | undefined;
  private stops: boolean; // its timer ends at the drain's stop, before its lease's (timerEnd)

  /** Enters host.running and host.timeouts. end: its timer's, or the drain's stop if sooner; leaseStart: its claim's sending. */
  constructor(private readonly host: RunHost, readonly job: Job, readonly startedAt: number, end: number,
              private readonly leaseStart: number) {
    this.stops = end < timerEnd(leaseStart, job.timeout);
    host.running.set(job.id, this);
    this.timeout = host.timeouts.at(end, this);
  }

  /** Waiting for a connection: released ahead of its end (unstarted.ts releaseAhead), sent at once; what disarms that. */
  releaseAhead(): () => void {
    return releaseAhead(this.timeout.end, () => {
      if (!this.waitsForConnection || this.ended) return;
      this.unstarted();
      this.host.settler.sendSoon();
    });
  }

  /** Its time ran out while it waited for a connection: released, and its drain claims no more than its pool has free. */
  private unstarted(): void {
    this.host.starve(); // before the release wakes the drain's loop
    releaseUnstarted(this, this.stops ? 'deadline' : 'timeout');
  }

  /** Its end came: the signal fires, the job is nacked without waiting for the handler (released if it never began). */
  expire(): void {
    if (this.host.running.get(this.job.id) !== this) return; // settled before its group's timer fired
    // Its end was the drain's stop, after the drain's signal: nacked to run again at once, as windDown does at the grace's end.
    if (this.stops && this.host.signalled()) {
      interrupted(this, `did not stop by the drain's deadline after ${this.host.stopCause()}`);
      return;
    }
    if (this.waitsForConnection) {
      this.unstarted();
      return;
    }
    const why = this.stops ? 'stopped at the drain deadline'
      : this.extended ? `timed out after ${this.job.timeout} s and its lease extended to ${this.extended.toISOString()}`
      : `timed out after ${this.job.timeout} s`;
    this.signal.abort(new Error(why));
    this.finish({ id: this.job.id, attempt: this.job.attempt, outcome: 'nack', error: why });
  }

  /**
   * ctx.extendLease: jobs.extend_lease for this delivery, through the drain's
   * pool as ctx.progress. Granted, its timer moves to `seconds` from when the
   * call was sent, less timerEnd's margin (the database's lease, from its own
   * later now, ends no sooner), never past the drain's stop: there it is stopped as ever ('stopped
   * at the drain deadline', nacked). null when it ended here (timed out, settled,
   * cancelled, given back) before or while the statement ran, when the database
   * says the delivery is over (then leaseLost, unless it is this delivery's
   * own success: endedHere), or when the statement failed
   * (best effort, as progress: an un-awaited heartbeat must not end the
   * process; the lease is as it was, and the next call may land).
   */
  async extendLease(seconds: unknown): Promise<Date | null> {
    const s = leaseSeconds(seconds); // before any statement: rejects naming seconds
    if (this.ended) return null;
    const { host, job } = this;
    const sentAt = Date.now();
    let until: Date | null;
    try {
      until = await extendLeaseOf(host.progress.db, job.id, job.attempt, s, host.progress.workerId);
    } catch {
      return null;
    }
    if (this.ended) return null;
    if (until === null) {
      if (!await this.endedHere()) this.leaseLost();
      return null;
    }
    this.extended = until;
    const want = timerEnd(sentAt, s);
    if (!this.stops && want > this.timeout.end) {
      const end = Math.min(want, host.stopAt);
      this.stops = end < want;
      this.timeout = host.timeouts.move(this.timeout, end, this);
    }
    return until;
  }

  /**
   * A task's heartbeatSeconds: extendLease(seconds) every beatDelay(seconds), a margin under half of it (the first
   * that after its claim's sending, not its start: a slow claim's time is its first lease's; of its timeout when
   * shorter), until finish(), each with half its lease to be answered. One at a time: the next set when one answers.
   */
  private startHeartbeat(seconds: number): void {
    const beat = async (): Promise<void> => {
      const sentAt = Date.now();
      const until = this.waitsForConnection ? null : await this.extendLease(seconds); // never rejects; none until its handler begins
      // Its signal fired while it runs here: the lease was lost (leaseLost).
      if (this.ended || this.signal.abortedWith !== undefined) return;
      this.beat = setTimeout(beat, Math.max(0, nextBeat(sentAt, seconds, until !== null, this.timeout.end) - Date.now()));
    };
    this.beat = setTimeout(beat, Math.max(0, this.leaseStart + beatDelay(Math.min(seconds, this.job.timeout)) - Date.now()));
  }

  /**
   * Whether a null from jobs.extend_lease is this delivery's own end, not a
   * lost lease: it ended here meanwhile, or a transactional handler's ack
   * committed before the drain read its COMMIT's answer (the beat, on
   * another connection, waited for the row the ack held). Asked only on that
   * rare null; a failed look-up counts as ended here (the next beat asks again).
   */
  private async endedHere(): Promise<boolean> {
    const { host, job } = this;
    try {
      return this.ended || await host.settler.endedAsSuccess(job.id, job.attempt) || this.ended;
    } catch {
      return true;
    }
  }

  /**
   * The database answered an extension of this delivery, still running here,
   * with null: its lease passed and a claim expired it (put back, handed out
   * again, perhaps to another drain, or ended), so nothing it settles can
   * land. Its heartbeat stops and its signal fires; its entry stays until
   * the handler answers or its timer fires, and that outcome is counted
   * stale. Not ended here with an outcome of its own: the null of a beat
   * that waited for a transactional ack's row can come before that ack's
   * COMMIT answers, and the job would be counted stale, not succeeded. Rare
   * (a drain that missed its own timer), so its reason is made here.
   */
  private leaseLost(): void {
    if (this.beat !== undefined) clearTimeout(this.beat);
    this.beat = undefined;
    this.signal.abort(new Error(LEASE_LOST));
  }

  finish(outcome: Outcome | null): void {
    const { host, job } = this;
    // Already settled (timeout, release): the entry under its id may be a later attempt's by now.
    if (host.running.get(job.id) !== this) return;
    host.running.delete(job.id);
    this.ended = true;
    host.timeouts.clear(this.timeout);
    if (this.beat !== undefined) clearTimeout(this.beat);
    this.signal.abort(SETTLED);
    host.settled(job, outcome, this.startedAt);
  }

  /**
   * Calls the handler (what the drain found for the job's task: handlerOf)
   * and hands whatever happens, as an outcome, to host.returned: always in a
   * later microtask, as for an async handler; null when a transactional
   * handler already settled its job (counted into host.settler).
   */
  runHandler(handler: Found): void {
    const { job, host } = this;
    this.began = Date.now();
    // An export may be a getter that throws, a handler a Proxy that throws when read.
    if (handler instanceof LookupThrew) return this.answer(thrownOutcome(job.id, job.attempt, handler.error));
    let transactional = false;
    let heartbeat: number | undefined;
    try {
      if (handler !== undefined) {
        transactional = isTransactional(handler);
        heartbeat = heartbeatOf(handler);
      }
    } catch (error) {
      return this.answer(thrownOutcome(job.id, job.attempt, error));
    }
    if (!handler) {
      return this.answer({ id: job.id, attempt: job.attempt, outcome: 'nack',
                           error: `unknown task "${job.task}": the tasks module exports no handler by that name` });
    }
    const ctx = this.ctx = new DrainJobContext(job, this.signal, host.publish, host.progress, host.rateLimit, this);
    // On one session a transactional handler's transaction holds the connection a beat would wait for.
    const db = host.deps.db;
    if (heartbeat !== undefined && !(transactional && 'maxConnections' in db && db.maxConnections === 1)) this.startHeartbeat(heartbeat);
    if (transactional) {
      host.holds(1);
      void inTransaction(host, handler, this, ctx).then((outcome) => {
        host.holds(-1);
        host.returned(this, outcome);
      });
      return;
    }
    let value: unknown;
    try {
      value = handler(job.body, ctx);
    } catch (error) {
      ctx.handlerEnded();
      return this.answer(thrownOutcome(job.id, job.attempt, error));
    }
    // As `await value` would: a thenable's then is called once, in a later microtask.
    void Promise.resolve(value).then((v) => this.resolved(v), (error: unknown) => this.rejected(error));
  }

  private resolved(value: unknown): void {
    const { job } = this;
    this.ctx!.handlerEnded(); // what it left publishing is no longer given up with its job (DrainJobContext)
    let outcome: Outcome;
    try {
      outcome = { id: job.id, attempt: job.attempt, outcome: 'ack', result: resultJson(value), ms: Date.now() - this.began };
    } catch (error) {
      outcome = thrownOutcome(job.id, job.attempt, error); // not JSON: a FailJob (never storable) or a TypeError (a Promise not awaited)
    }
    this.host.returned(this, outcome);
  }

  private rejected(error: unknown): void {
    this.ctx!.handlerEnded();
    this.host.returned(this, thrownOutcome(this.job.id, this.job.attempt, error));
  }

  private answer(outcome: Outcome): void { void Promise.resolve(outcome).then((o) => this.host.returned(this, o)); }
}
