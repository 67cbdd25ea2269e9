import { Command, Option } from 'commander';
import type { Driver, Queryable, QueryOptions } from '../db/driver.js';
import type { ReadBound } from '../db/pg-events.js';
import { PgDrainError } from '../errors.js';
import { fromEnv } from './env.js';
import { seconds } from './flag-parsers.js';

// --db-timeout: how long a one-shot command (publish, stats, cancel, jobs, …)
// waits for a database that does not answer (a frozen network, a stopped
// PgBouncer), which TCP would wait for forever: a CronJob running `pgdrain
// publish` has no deadline of its own. drain bounds itself (--overrun) and
// serve per request: they take no --db-timeout. PGDRAIN_DB_TIMEOUT stands in
// for the flag when it is absent (on migrate, for its connection only).

/** --db-timeout's default, in seconds. */
export const DB_TIMEOUT_SECONDS = 30;

/** The environment variable that stands in for --db-timeout. */
export const DB_TIMEOUT_ENV = 'PGDRAIN_DB_TIMEOUT';

/** Commands with a --dsn that bound their database waits otherwise. */
const UNBOUNDED = new Set(['drain', 'serve']);

/** What one command waits for, in ms: a connection, then each statement (undefined: no bound). */
interface DbBound {
  connectMs: number | undefined;
  statementMs: number | undefined;
}

/** The running command's (boundOf), set as commander calls its action; the CLI runs one command. */
let current: DbBound | undefined;

/**
 * --db-timeout's help where it bounds less than every statement unless given:
 * there its default (connecting) is no commander default, so a value given is told apart.
 */
const HELP: Record<string, string> = {
  migrate: `give up on a database that does not answer: connecting (default ${DB_TIMEOUT_SECONDS}), `
    + 'and, only when given, each statement (a migration may take long, or wait for another migrate)',
  maintain: `give up on a database that does not answer: connecting (default ${DB_TIMEOUT_SECONDS}), `
    + 'and, only when given, each pass (a pass of a large --max-rows, or one waiting on a lock, may take long: cut, it commits nothing)',
  wait: `give up on a database that does not answer while connecting and starting to listen (default ${DB_TIMEOUT_SECONDS}), `
    + 'and, only when given, each read of the job (the wait itself ends at --timeout)',
};

/**
 * Adds --db-timeout to every command of cli that takes a --dsn, but drain
 * and serve. migrate's bounds only its connection unless given: a
 * migration may rightly take long (an index on a large table), and migrate
 * waits on purpose for another migrate's lock (pg_advisory_xact_lock).
 * maintain's too: a pass cut at the bound rolls back, so one that takes
 * longer (--max-rows up to 10,000,000, a lock) would fail every run; its
 * --budget bounds when passes start.
 * wait's bounds its LISTEN session's opening, and its reads only when given: its waiting is its --timeout.
 */
export function addDbTimeout(cli: Command): void {
  for (const cmd of cli.commands) {
    if (UNBOUNDED.has(cmd.name())) continue;
    addDbTimeout(cmd);
    if (!cmd.options.some((o) => o.long === '--dsn')) continue;
    const help = HELP[cmd.name()] ?? 'give up on a database that does not answer: connecting, and each statement';
    const option = new Option('--db-timeout <seconds>', `${help}; 0: no bound (env: ${DB_TIMEOUT_ENV})`).argParser(seconds(0, 86400));
    cmd.addOption(HELP[cmd.name()] ? option : option.default(DB_TIMEOUT_SECONDS));
  }
  if (!cli.parent) cli.hook('preAction', (_cli, action) => void (current = boundOf(action)));
}

/**
 * The bound a command's --db-timeout, else PGDRAIN_DB_TIMEOUT, sets (none:
 * the command has no such flag). Where the flag bounds statements only when
 * given (HELP: migrate), the variable bounds the connection only, as the
 * default does: set for every command (a shared ConfigMap), it must not give
 * up on a long migration, or on one waiting for another migrate's lock.
 */
function boundOf(cmd: Command): DbBound | undefined {
  const option = cmd.options.find((o) => o.long === '--db-timeout');
  if (!option) return undefined;
  fromEnv(cmd, option, DB_TIMEOUT_ENV);
  const given = cmd.opts<{ dbTimeout?: number }>().dbTimeout;
  const onStatements = !HELP[cmd.name()] || cmd.getOptionValueSource(option.attributeName()) === 'cli';
  const ms = (s: number | undefined) => (s === undefined || s === 0 ? undefined : s * 1000);
  return { connectMs: ms(given ?? DB_TIMEOUT_SECONDS), statementMs: onStatements ? ms(given) : undefined };
}

/** Where a URL points, for the error: host:port (its password never). */
function serverOf(url: string): string {
  try {
    return new URL(url).host || 'the database';
  } catch {
    return 'the database';
  }
}

/** The error of a bound that passed: what did not answer, where, and the bound. */
const unanswered = (what: string, server: string, ms: number) =>
  new PgDrainError('database_unavailable', `database unavailable: ${what} ${server} within ${ms / 1000} s (--db-timeout)`);

/**
 * opening (a session the command opens itself: wait's LISTEN), rejected with
 * database_unavailable naming url's server once the running command's
 * connection bound passes; the caller then ends what it was opening.
 */
export function openedWithin<T>(opening: Promise<T>, url: string): Promise<T> {
  const ms = current?.connectMs;
  if (ms === undefined) return opening;
  return withinMs(ms, () => unanswered('no connection to', serverOf(url), ms), () => opening);
}

/**
 * The bound on each read of a session the command opened itself, once open
 * (wait's checks of its job): the running command's statement bound, which
 * wait has only when --db-timeout is given (undefined: none). A read past
 * it is given up with database_unavailable naming url's server.
 */
export function sessionReadBound(url: string): ReadBound | undefined {
  const ms = current?.statementMs;
  if (ms === undefined) return undefined;
  const server = serverOf(url);
  return (read) => withinMs(ms, () => unanswered('no reply from', server, ms), read);
}

/** work, given a signal that aborts (and rejected with reason()) once ms passed. */
async function withinMs<T>(ms: number, reason: () => Error, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const gaveUp = new AbortController();
  const timer = setTimeout(() => gaveUp.abort(reason()), ms);
  try {
    return await unless(work(gaveUp.signal), gaveUp.signal);
  } finally {
    clearTimeout(timer);
  }
}

/** work, rejected with signal's reason once it aborts (work is left to settle unobserved). */
function unless<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const giveUp = () => reject(signal.reason as Error);
    signal.addEventListener('abort', giveUp, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', giveUp));
  });
}

/**
 * Runs fn with the connection's driver bounded by the running command's
 * --db-timeout (boundedBy); as it is without one, or on the embedded
 * database (no URL: no network to wait for).
 */
export function withinBound<C extends { driver: Driver; embeddedDir?: string }, T>(
  connection: C, url: string | undefined, fn: (c: C) => Promise<T>): Promise<T> {
  if (!current || !url || connection.embeddedDir !== undefined) return fn(connection);
  return boundedBy(current, connection.driver, url, (driver) => fn({ ...connection, driver }));
}

/**
 * Runs fn with driver (a pgDriver over url) bounded: the first connection
 * must open within connectMs, each statement answer within statementMs.
 * When one does not, the command is given up: fn's call rejects at once with
 * database_unavailable naming what did not answer and the bound, and every
 * statement in flight gets the signal, so that pgDriver cancels it on the
 * server and resets its connection (the statement cannot run later). The
 * caller then closes the driver, which ends the connections still opening.
 */
async function boundedBy<T>(bound: DbBound, driver: Driver, url: string, fn: (driver: Driver) => Promise<T>): Promise<T> {
  const server = serverOf(url);
  const gaveUp = new AbortController();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const within = <R>(ms: number | undefined, what: string, work: (signal: AbortSignal) => Promise<R>): Promise<R> => {
    if (ms === undefined) return unless(work(gaveUp.signal), gaveUp.signal);
    const timer = setTimeout(() => gaveUp.abort(unanswered(what, server, ms)), ms);
    timers.add(timer);
    return unless(work(gaveUp.signal), gaveUp.signal).finally(() => {
      clearTimeout(timer);
      timers.delete(timer);
    });
  };
  const statement = (db: Queryable): Queryable['query'] => (text, params, options?: QueryOptions) =>
    within(bound.statementMs, 'no reply from', (signal) =>
      db.query(text, params, { signal: options?.signal ? AbortSignal.any([signal, options.signal]) : signal }));
  try {
    // Opened apart from the first statement (the statement takes it from the pool): its error says which did not come.
    if (driver.warm) await within(bound.connectMs, 'no connection to', () => driver.warm!());
    const bounded: Driver = {
      ...driver,
      query: statement(driver),
      // A transaction (migrate's) given up: its statement in flight is cancelled on the server (pgDriver),
      // so a lock wait ends there too; the driver's close then ends its connection.
      transaction: (body) => within(undefined, '', () => driver.transaction((tx) => body({ query: statement(tx) }))),
    };
    return await within(undefined, '', () => fn(bounded));
  } finally {
    for (const timer of timers) clearTimeout(timer);
  }
}
