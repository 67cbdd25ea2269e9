import type { Driver, Queryable } from './db/driver.js';
import { hasTransactionalTask } from './define-task.js';
import { ValidationError } from './errors.js';
import { TaskLookup } from './tasks.js';
import { jsonParam } from './json-text.js';
import { drainArgsSchema, drainOptionsSchema, type DrainOptions } from './drain-options.js';
import { parse } from './options.js';
import { poolShare } from './pool-share.js';
import type { PublishOptions, TaskMap } from './types.js';

// What one drain runs with: what it needs from its queue (DrainDeps), its
// arguments and options checked (options over the queue's defaults), the
// defaults of those left out, and the numbers that follow from them.

/** What drain() needs from its queue. */
export interface DrainDeps {
  /** A Driver (with transaction) is needed only by transactional tasks. */
  db: Queryable | Driver;
  tasks: TaskMap;
  publish(task: string, body?: unknown, options?: PublishOptions): Promise<string>;
  defaults?: DrainOptions;
}

/** Time kept back before the deadline for the last settle round trip. */
export const DEFAULT_SETTLE_MARGIN_MS = 500;
/** How long an outcome may wait for the next claim before it is settled on its own. */
export const DEFAULT_FLUSH_INTERVAL_MS = 50;
/** How often running jobs older than this are checked for a cancel request. */
export const DEFAULT_CANCEL_CHECK_MS = 2000;
/** How long past its deadline (or its grace after a signal, or its hardSignal) a drain waits for a silent database. */
export const DEFAULT_OVERRUN_MS = 5000;

/** drain()'s arguments and options, checked: a bad one throws a ValidationError naming it. */
export function drainSettings(deps: DrainDeps, batchSize: number, deadline: Date | number, options: DrainOptions) {
  const args = parse(drainArgsSchema, { batchSize, deadline }, '');
  // An option given as undefined is absent: it does not undo the queue's default.
  const given = Object.fromEntries(Object.entries(options ?? {}).filter(([, v]) => v !== undefined));
  const opts = parse(drainOptionsSchema, { ...deps.defaults, ...given }, 'options', 'drain');
  const driver = deps.db as Partial<Driver>;
  const transactional = hasTransactionalTask(deps.tasks);
  if (transactional && driver.holdsTransactions === false) {
    throw new ValidationError('tasks', 'a task is transactional, and this driver holds no transaction '
      + '(neonHttpDriver): use neonDriver or pgDriver, or define the task without { transactional: true }');
  }
  // A transactional handler holds a pooled connection until its transaction
  // ends, even past its timeout: by default no more run than the pool holds,
  // less one kept for the drain's own claims and settles (without it, handlers
  // hung past their timeout would leave no connection to nack them with).
  const poolSize = opts.concurrency === undefined && transactional ? driver.maxConnections : undefined;
  const poolBound = poolSize !== undefined;
  // Its pool's share (pool-share.ts), for any drain on a pool of known size: even a drain with no transactional task
  // reads there whether the transactional handlers of the drains beside it leave a connection for its last look.
  const pool = driver.maxConnections !== undefined ? poolShare(driver) : undefined;
  const concurrency = opts.concurrency ?? Math.min(args.batchSize, poolBound ? Math.max(1, poolSize - 1) : Infinity);
  return {
    args, opts, driver, poolBound, concurrency,
    /**
     * The connections of its pool that transactional handlers hold, over every drain on it (pool-share.ts): a
     * pool-bound drain keeps under it; one given `concurrency` is not bound, but counts its claims there (its
     * transactional handlers count in `pool`, as any drain's).
     */
    share: transactional ? pool : undefined,
    /**
     * Its pool's share, whatever its tasks: what its last look reads (last-look.ts), and where its transactional
     * handlers count (a task made transactional after its start too: its lookup finds tasks defined since).
     */
    pool,
    /** Pool-bound, the most handlers of all its pool's drains it starts beside: its own driver's bound, not the first drain's. */
    poolCap: Math.max(1, (poolSize ?? 1) - 1),
    /** Whatever its concurrency, the most transactional handlers of its pool's drains it lets hold a connection at once. */
    connectionCap: driver.maxConnections === undefined ? Infinity : Math.max(1, driver.maxConnections - 1),
    /** Claim again once this many slots are free. */
    refillAt: Math.ceil(Math.min(args.batchSize, concurrency) / 2),
    /** No job runs past it: the deadline less the settle margin. */
    stopAt: args.deadline - (opts.settleMarginMs ?? DEFAULT_SETTLE_MARGIN_MS),
    /** The claim's filter and exclude, as JSON text. */
    filter: opts.filter === undefined ? null : jsonParam(opts.filter, 'options.filter'),
    exclude: opts.exclude?.length ? opts.exclude.map((e, i) => jsonParam(e, `options.exclude[${i}]`)) : null,
    // 48 random bits tell drains apart; a whole UUID would add 24 bytes to the
    // claimed row and to every job's history row.
    workerId: opts.workerId ?? `drain-${globalThis.crypto.randomUUID().slice(-12)}`,
    /**
     * This drain call's claims' token (jobs.claim_json's holder, as bigint
     * text): they leave its own passed leases to its timers. Random per call,
     * not the worker id: that may be shared, or a crashed drain's successor's.
     */
    holder: globalThis.crypto.getRandomValues(new BigInt64Array(1))[0]!.toString(),
    lingerMs: opts.lingerMs ?? 0,
    overrunMs: opts.overrunMs ?? DEFAULT_OVERRUN_MS,
    flushIntervalMs: opts.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS,
    cancelCheckMs: opts.cancelCheckMs ?? DEFAULT_CANCEL_CHECK_MS,
    /** Its jobs' handlers by task name: the module's defined task names walked once for the drain, not per job. */
    lookup: new TaskLookup(deps.tasks),
  };
}
