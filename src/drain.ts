import { BatchRunner } from './batch-run.js';
import { watchRunningCancels } from './cancel-watch.js';
import { ClaimTally } from './claim-tally.js';
import { claimCall, rolledBackWhole } from './claim-call.js';
import type { DrainOptions } from './drain-options.js';
import { batchSpecs, handlerOf, hasPlainTask, type Found } from './define-task.js';
import { drainSettings, type DrainDeps } from './drain-settings.js';
import { DrainStop } from './drain-stop.js';
import { DrainHooks } from './drain-hooks.js';
import { endOnFault, settleLast, type DrainEnd } from './drain-end.js';
import { FailureList } from './failure-list.js';
import { DEFAULT_POLL_MS, IdleWait } from './idle-wait.js';
import { LastLook } from './last-look.js';
import { rateLimiter } from './rate-limit.js';
import { JobRun } from './run-handler.js';
import type { RunHost } from './run-host.js';
import { RoundTripLimit } from './round-trip-limit.js';
import { poolFullNote } from './pool-full.js';
import { RunningJobs } from './running-jobs.js';
import { SlotWait } from './slot-wait.js';
import type { Outcome } from './outcome-arrays.js';
import { pauseUntil } from './settle-pause.js';
import { Settler } from './settler.js';
import { claimedIds, toJob, type ClaimResult } from './claim-answer.js';
import { handlerEnd } from './handler-end.js';
import { Timeouts } from './timeouts.js';
import { causeOf, endEarlierDelivery, windDown, type Interrupted } from './wind-down.js';
import type { DrainReport, Job, StoppedBy } from './types.js';
export { DEFAULT_CANCEL_CHECK_MS, DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_OVERRUN_MS, DEFAULT_SETTLE_MARGIN_MS, type DrainDeps } from './drain-settings.js';

/**
 * Claims, runs and settles jobs until the queue is empty, the deadline is
 * near, or options.signal fires; then returns what it did.
 *
 * - A claim takes only jobs whose timeout fits before `deadline - settleMarginMs`, so every job it starts can
 *   finish in time; the report's `skipped` counts due jobs it left alone for that reason (with no budget at all,
 *   or after a wait for a free slot until the deadline, one claim that takes none counts them, if a connection
 *   is free for it: last-look.ts).
 * - Each handler's ctx.signal fires a margin (min(0.5 s, a tenth)) before its job's timeout ends; its nack goes at once, within the lease.
 * - On options.signal it stops claiming, lets running handlers go on for graceMs (default: until their
 *   timeout), then aborts and retries the rest at once, their attempt spent (wind-down.ts interrupted; one
 *   still waiting for a connection is released); on hardSignal at once. The report's `interrupted` counts each.
 * - It returns by the deadline plus the time of its last settle statement
 *   (bounded by settleMarginMs on a healthy database). A database that stops
 *   answering is given up overrunMs after the deadline (or after the grace
 *   that follows options.signal, or after hardSignal, whichever is first):
 *   drain() then rejects with database_unavailable, saying how many outcomes it could not
 *   record (unrecorded.ts): those jobs run again once their leases expire (or fail, on their last attempt). A claim that fails otherwise
 *   (a lost connection) ends the drain the same way, once its running
 *   handlers have ended and their outcomes had their chance to settle; then what that claim may have leased to it,
 *   its answer lost after it committed, is given back (drain-end.ts settleLast).
 * - It consumes options.queue (default 'default'), only jobs whose attributes
 *   contain options.filter when given and none of options.exclude's objects,
 *   and records options.workerId on them.
 * - Jobs cancelled while they run (jobs.cancel) get their signal aborted,
 *   best effort, within about 2 × cancelCheckMs.
 * - With options.lingerMs, a drain that finds its queue empty waits up to
 *   lingerMs (never past deadline - settleMarginMs) for new work, claiming
 *   again on a NOTIFY from publish or every pollMs (idle-wait.ts); each
 *   claim that finds work restarts that wait.
 * - The jobs of a batch task (defineTask(…, { batch: true })) one claim
 *   brings run in one handler call, or calls of its maxSize (batch-run.ts).
 * - Once a transactional handler of its waited in vain for a connection (its job released unstarted: unstarted.ts),
 *   it claims no more jobs than its pool has connections free for them, none while none is, until a claim takes one
 *   come free; not while its claims bring plain jobs too, nor once when its last came back full and it has plain or batch
 *   tasks (slot-wait.ts starve).
 */
export async function drain(deps: DrainDeps, batchSize: number, deadline: Date | number,
                            options: DrainOptions = {}): Promise<DrainReport> {
  const startedAt = Date.now();
  // Options checked, and what follows from them (drain-settings.ts). poolBound: the pool's size bounds concurrency.
  const { args, opts, driver, poolBound, share, pool, poolCap, connectionCap, concurrency, refillAt, stopAt, filter, exclude, workerId, holder,
          lingerMs, overrunMs, flushIntervalMs, cancelCheckMs, lookup } = drainSettings(deps, batchSize, deadline, options);
  const idle = lingerMs > 0 ? new IdleWait(driver, opts.queue ?? 'default', opts.pollMs ?? DEFAULT_POLL_MS) : undefined;
  let idleSince: number | undefined; // set while it lingers: no job runs, and the last claim found none
  // No budget at all, or a linger or a wait for a slot ended: one claim with none counts what is due, a connection free.
  const lastLook = new LastLook({ share: pool, poolSize: driver.maxConnections, waitsAlone: () => slots.waitsAlone });
  // Given up while a statement waited for a connection of a full pool, its error says so (pool-full.ts).
  const limit = new RoundTripLimit(args.deadline, overrunMs, opts, poolFullNote({ max: driver.maxConnections, share: pool,
    counts: driver.connections?.bind(driver), own: (): number => slots.connected, unsettled: (): number => settler.unsettled(), concurrency }));
  const db = limit.bind(deps.db); // the drain's own round trips (claims, settles, cancel checks)
  const claim = claimCall(db, opts.topic ?? null, opts.queue ?? null, filter, workerId, exclude, holder);
  const failures = new FailureList(); // what its settles did: willRetry false for a nack ended cancelled, a stale one left out
  const hooks = DrainHooks.of(opts); // undefined without hooks: no event is built per job
  // Its final settle pauses between failed tries, never past the limit. The hooks hear what a release unstarted became.
  const settler = new Settler(db, flushIntervalMs, workerId, pauseUntil(limit.signal), hooks ? hooks.listening(failures) : failures);
  // ctx.progress and ctx.rateLimit: the handler's own round trips, as its
  // publishes (not bound by the drain's limit, which would add an abort
  // listener per statement in flight: Node warns past 10).
  const progressSink = { db: deps.db, workerId };
  const rateLimit = rateLimiter(deps.db);
  const running = new RunningJobs();
  let claimError: unknown;
  let interrupted: Interrupted = { nacked: [], released: [] }; // what the grace's end or hardSignal cut short
  let rolledBack = 0; // claims in a row a deadlock or serialization failure rolled back
  const tally = new ClaimTally(); // what its claims answered
  let ended = 0; // jobs finished so far: one that ends during a claim can make work claimable
  // When its loop wakes, and why it stops (drain-stop.ts). Lingering, the idle wait ends itself at stopAt (stoppedBy 'empty');
  // so does the loop while it owes its last look or waits for a slot for one.
  const stopped = new DrainStop(opts, stopAt, (): boolean => idleSince === undefined && !lastLook.holdsStop());
  const { changed, wake } = stopped;
  const stop = (why: StoppedBy) => stopped.stop(why);
  // Its slots for handlers, pool-bound its pool's connections shared with the other drains on it, and its wait for them.
  const slots = new SlotWait({ running, poolBound, share, pool, poolCap, connectionCap, concurrency, refillAt, idle, stopped, stopAt,
    lingerMs, servesPlain: () => hasPlainTask(deps.tasks) });
  // Every claimed job passes here once. startedAt: when its handler began (none: it never started).
  const record = (job: Job, outcome: Outcome | null, startedAt?: number) => {
    if (outcome === null) { // acked in its own transaction
      settler.forget(job.id);
      return hooks?.ended(job, null, startedAt);
    }
    failures.add(job, outcome);
    settler.add(outcome);
    hooks?.ended(job, outcome, startedAt);
  };
  // A started job ended (its entry left running).
  const settled = (job: Job, outcome: Outcome | null, startedAt: number) => {
    ended++;
    record(job, outcome, startedAt);
    wake();
  };
  const timeouts = new Timeouts(() => settler.sendSoon()); // what its timers ended is sent now, within its leases
  const publish: DrainDeps['publish'] = (task, body, options) => deps.publish(task, body, options);
  const host: RunHost = { deps, publish, settler, progress: progressSink, rateLimit, running, timeouts, stopAt, settled,
    signalled: () => stopped.by === 'signal',
    stopCause: () => causeOf(opts.signal, "the drain's signal"),
    returned(run, outcome) {
      slots.add(-1); // before finish (a throw there keeps no slot); its connection is free only now
      run.finish(outcome);
    },
    holds: (n) => slots.holds(n), connect: (gaveUp) => slots.connect(gaveUp), disconnect: () => slots.disconnect(),
    starve: () => slots.starve(tally.claimed, tally.full, tally.asked) };
  const start = (job: Job, claimSentAt: number, now: number, end: number, handler: Found) => {
    const run = new JobRun(host, job, now, end, claimSentAt); // in running and timeouts
    slots.add(1);
    hooks?.started(job);
    run.runHandler(handler);
  };
  const batchOf = batchSpecs(); // whether a job's task runs as a batch (its handler's spec); a runner once one does
  let batchRunner: BatchRunner | undefined;
  const newBatchRunner = () => new BatchRunner({ running, timeouts, hooks, publish, rateLimit, settled,
    calling: (n) => slots.add(n) });

  // A claim's jobs, started. In a function of its own: locals of the loop
  // (the answer's columns, its last job) would stay alive through the next
  // claim's round trip, for the garbage collector to copy and promote.
  const startClaimed = (result: ClaimResult, claimSentAt: number) => {
    const { jobs, count } = result;
    if (jobs?.keyed) settler.claimedKeyed(jobs.keyed, jobs.keyedMaxRetries!); // before any of their outcomes
    const now = Date.now();
    for (let i = 0, ids = claimedIds(jobs), ranBefore = running.size > 0; i < count; i++) {
      const job = toJob(jobs!, ids, i, result.queue, result.now);
      // Its lease passed while it ran here (a job of an earlier claim): that delivery's nack is stale, no failure,
      // whichever settle carries it (one that applies this delivery's outcome leaves it out of stale_ids).
      const lost = ranBefore ? endEarlierDelivery(running, job.id) : undefined;
      if (lost) failures.stale(lost);
      const end = handlerEnd(job, claimSentAt, now, stopAt, !!stopped.by); // when its handler must end (or why it cannot start)
      if (typeof end !== 'number') {
        record(job, end);
        continue;
      }
      const handler = handlerOf(lookup, job.task); // once per job: runHandler calls what batchOf read
      const spec = batchOf(handler);
      if (spec) (batchRunner ??= newBatchRunner()).add(spec, job);
      else start(job, claimSentAt, now, end, handler);
    }
    batchRunner?.start(claimSentAt, stopAt, now);
  };
  const stopWatching = watchRunningCancels(db, cancelCheckMs, running);
  const ending: DrainEnd = { running, settler, limit, hooks, workerId, db, holder }; // what its end settles and lets go of (drain-end.ts)
  try {
    while (!stopped.by) {
      const free = slots.free();
      // No budget from its first claim on (a Lambda with under settleMarginMs left): one look, with no slot free too (no job taken).
      if (tally.batches === 0 && stopAt <= Date.now()) lastLook.owe();
      if (!lastLook.due && slots.short(free)) {
        const why = await slots.wait(free, idleSince);
        // Its wait ended at stopAt or its linger's end: it looks once more first, as below (no budget: no slot needed).
        if (why === 'until' && !lastLook.owe()) stop(idleSince === undefined || tally.skipped > 0 ? 'deadline' : 'empty');
        if ((why !== 'heard' && why !== 'poll') || free <= 0) continue;
      }
      // Read before take(): a job that ends while take() hands its outcomes
      // over is not among them, and a claim that finds nothing must see it
      // ended (its settle, maybe flushed meanwhile, can make work claimable).
      const endedBefore = ended;
      // take() may wait for a settle in flight: the budget and a stop are read after it.
      const outcomes = await settler.take();
      // The budget from the claim's own start: a job whose timeout fits it ends by stopAt. Its jobs' time counts
      // from its connection (set below): a full pool's wait is not theirs; the leases start later still.
      let claimSentAt = Date.now();
      const budgetMs = stopAt - claimSentAt;
      const look = lastLook.due; // a last look: no budget, so it takes no job and needs no slot; sent only with a connection free
      if (stopped.by || (budgetMs <= 0 && !look) || (look && !lastLook.send())) {
        settler.untake(outcomes); // sent by its timer meanwhile: the grace (a stop) can be long, their leases short
        stop(idleSince === undefined || tally.skipped > 0 ? 'deadline' : 'empty');
        break;
      }
      const room = slots.room(free);
      if (!look && room <= 0) { settler.untake(outcomes); continue; }
      let result: ClaimResult;
      idle?.claiming();
      const want = Math.min(args.batchSize, Math.max(room, 1));
      slots.claiming(want);
      try {
        const { rows } = await claim(want, look ? 0 : budgetMs, outcomes, () => { claimSentAt = Date.now(); });
        result = rows[0]!.r;
        rolledBack = 0;
      } catch (error) {
        settler.untake(outcomes); // sent by its timer, as above: the handlers still running can outlast these leases
        // Rolled back whole (its settle too: a user's transaction taking serial
        // keys out of order can deadlock with it): nothing changed, try again.
        if (rolledBackWhole(error) && ++rolledBack <= 3) continue;
        // The claim failed (its connection lost, the database gone): claim no
        // more. Running handlers still hold their leases, so they finish and
        // settle as in any stop; given back now, another drain would run
        // them while they still run here. What it may have leased, its answer lost, goes back once they settled (settleLast).
        claimError = error;
        break;
      } finally {
        slots.claiming(-want);
      }
      tally.batches++;
      settler.count(result.settled, outcomes);
      tally.took(result, want, look, budgetMs);
      const { count, unfit } = result;
      // Its leases began after its wait for a tick (jobs.claim_json): the jobs' time counts from there.
      startClaimed(result, claimSentAt + result.waitedMs);
      if (count > 0) idleSince = undefined;
      else {
        // Nothing claimable: the queue is empty, or what is due no longer fits the budget.
        // Outcomes gathered meanwhile go with one more claim: settling them
        // can make jobs claimable (dependants, a serial key's next job). So
        // does a job that ended while the claim was out (a transactional one
        // commits its follow-ups and ack itself, after the claim's snapshot):
        // claim again at once, as its wake came before this wait. A stop that came while the claim was out woke no one: check it.
        if ((budgetMs <= 0 || look) && idleSince === undefined) stop('deadline'); // that look: as its deadline's timer says
        if (ended !== endedBefore || stopped.by) continue;
        if (running.size > 0) await (idle ? idle.wait(stopAt, changed()) : changed());
        else if (settler.hasBuffered()) continue;
        else if (idle && await idle.wait(Math.min((idleSince ??= Date.now()) + lingerMs, stopAt), changed()) !== 'until') continue;
        // Its linger ran to stopAt: a job that came due since the last claim sent no NOTIFY. A claim with
        // no budget claims nothing and counts it in unfit: a drain that leaves due work says 'deadline' (docs/typescript-api.md).
        else if (idle && idleSince! + lingerMs >= stopAt && lastLook.owe()) continue;
        else stop(unfit > 0 ? 'deadline' : 'empty');
      }
    }
    interrupted = await windDown(running, stopped.by === 'signal' ? opts.graceMs : undefined, changed, opts.hardSignal, opts.signal);
  } catch (error) {
    await endOnFault(error, ending); // not a claim's error: a fault of the drain itself; what runs is given back
  } finally {
    await idle?.close();
    stopWatching();
    stopped.dispose();
  }
  await settleLast(ending, claimError);
  const { claimed, skipped, skippedTimeouts, queuePaused, queueAtMaxRunning, queueAtGroupConcurrency, batches } = tally;
  return {
    claimed, ...settler.totals, releasedUnstarted: failures.unstarted, skipped, skippedTimeouts, queuePaused, queueAtMaxRunning,
    queueAtGroupConcurrency, stoppedBy: stopped.by ?? 'empty', durationMs: Date.now() - startedAt, batches, failures: failures.list,
    failuresOmitted: failures.omitted,
    // Those of the stop's releases that stayed releases: one its settle made a nack (the 26th in a row: a failure, its
    // attempt spent), ended cancelled or found stale was none, as releasedUnstarted counts them. Its nacks alike:
    // one found stale or ended cancelled is in stale or cancelled, not retried or failed.
    interrupted: { nacked: interrupted.nacked.filter((o) => failures.keptNack(o)).length,
                   released: interrupted.released.filter((o) => failures.keptRelease(o)).length },
  };
}
