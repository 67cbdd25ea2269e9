import { asTsCalls } from './hint-calls.js';

/**
 * Typed errors. Every error pgdrain raises on purpose is a PgDrainError with
 * a stable `code`, the offending `field` when there is one, and the `cause`.
 */
export type ErrorCode =
  | 'invalid_argument'
  | 'database_unavailable'
  | 'migration_failed'
  | 'not_migrated'
  | 'tasks_module'
  | 'queue_full'
  /** A wait (waitFor's timeoutMs) ran out before what it waited for happened. */
  | 'timed_out'
  | 'unsupported'
  /** The database role lacks a privilege for what was asked (SQLSTATE 42501; docs/roles.md "Roles"). */
  | 'permission_denied'
  /**
   * The server ran out of something it sizes by a setting (SQLSTATE class 53
   * but 53300, or 55P03 lock_not_available): the message says what to change.
   */
  | 'resources_exhausted';

/** drain()'s error when its last settle failed: the outcomes it could not record, by kind (src/unrecorded.ts). */
export interface UnrecordedOutcomes {
  total: number;
  succeeded: number;
  /** Nacked or failed (retried or failed once their leases pass: an attempt spent). */
  failed: number;
  /** Given back unstarted or snoozed. */
  released: number;
}

export class PgDrainError extends Error {
  override readonly name: string = 'PgDrainError';
  readonly code: ErrorCode;
  readonly field: string | undefined;
  /** drain()'s error only: what its last settle could not record (its message says it too); else undefined. */
  declare unrecorded?: UnrecordedOutcomes;
  /**
   * drain()'s error only, when a claim whose answer was lost ended it: the jobs that claim had leased to it, never
   * started, given back once its running handlers' outcomes landed (their attempt unspent; its message says it too).
   */
  declare lostClaimReleased?: number;

  constructor(code: ErrorCode, message: string, options: { field?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.field = options.field;
  }
}

/** Bad input at an edge: the message names the field and the rule. */
export class ValidationError extends PgDrainError {
  override readonly name = 'ValidationError';
  /** The rule broken, without the field: "must be at most 1000". */
  readonly rule: string;
  constructor(field: string, rule: string, options: { cause?: unknown } = {}) {
    super('invalid_argument', `${field}: ${rule}`, { field, ...options });
    this.rule = rule;
  }
}

/** SQLSTATEs raised by sql/*.sql (class PD), each naming the field it checks. */
const sqlStates: Record<string, string> = {
  PD001: 'task',
  PD002: 'timeout',
  PD003: 'max_retries',
  PD004: 'priority',
  PD005: 'n',
  PD006: 'pattern',
  PD007: 'schedule_at',
  PD008: 'outcomes',
  PD009: 'queue',
  PD010: 'queue',
  PD011: 'dedupe_key',
  PD012: 'serial_key',
  PD013: 'depends_on',
  PD014: 'attributes',
  PD015: 'max_size',
  PD016: 'prefix',
  PD017: 'jobs',
  PD018: 'task',
  PD019: 'group_id',
  PD020: 'progress',
  PD021: 'reason',
  PDC01: 'cron',
  PDC02: 'name',
  PDC03: 'argument',
};

// Data exceptions a value sent as a parameter causes (a NUL byte in text, a
// number or time out of range, text that is not JSON): bad input, whatever
// edge let it through.
const badValue = new Set(['22021', '22P02', '22P05', '22003', '22007', '22008', '22009']);

/**
 * Connection-level failures worth a one-line "database unavailable" (53300: no connection slot left),
 * and every SQLSTATE of class 08 (connection exception): PgBouncer answers 08P01 for a server it cannot
 * reach or log in to, with the server's own message ("the database system is starting up") or its own
 * ("server login has been failing", "client_login_timeout (server down)"). workerd says it in words of
 * its own: a TCP connect() that fails is "proxy request failed, cannot connect to the specified address",
 * a socket lost is "Network connection lost.".
 */
const unavailable = new Set(['53300', 'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EHOSTUNREACH', 'EPIPE', '57P01', '57P02', '57P03']);

/** What to change for each resource a statement ran out of (53300, no connection slot, is "unavailable"). */
const exhausted: Record<string, string> = {
  // PostgreSQL's "out of shared memory" is, nearly always, its lock table full.
  '53200': 'the lock table is full (about max_locks_per_transaction x max_connections locks, shared by every '
    + "session): each serial-key job a settle or an expiry ends holds its key's lock until commit, as does each key "
    + 'a bulk publish, redrive, fail or cancel takes. Use a smaller batch or fewer jobs per call, keep transactions '
    + 'holding serial keys short, or raise max_locks_per_transaction (a server setting, read at start)',
  '53100': "the server's disk is full: free space, or give it more",
  '53400': 'a server limit was reached (the message names it): raise it, or ask less of one statement',
  '53000': 'the server lacks a resource (the message names it)',
  '55P03': "a lock wait ran past lock_timeout, or a lock was busy: a transaction held a job's row or a serial key this "
    + 'statement needed; keep such transactions short, or raise lock_timeout for this role',
};

/**
 * Turns a driver error into a PgDrainError where pgdrain knows what it means;
 * returns anything else unchanged.
 */
export function translateError(error: unknown): unknown {
  if (error instanceof PgDrainError || typeof error !== 'object' || error === null) return error;
  // A WebSocket's error event, not an Error: the Neon driver in workerd rejects with it when its socket
  // cannot connect or is lost ("Network connection lost."). Left as it is, it passes any `instanceof Error`
  // handler by (hono's onError among them): the Worker threw instead of answering 503.
  if (!(error instanceof Error) && (error as { type?: unknown }).type === 'error') {
    const message = String((error as { message?: unknown }).message ?? 'a WebSocket error').replace(/^Uncaught (Error: )?/, '');
    return new PgDrainError('database_unavailable', `database unavailable: ${message}`, { cause: error });
  }
  const e = error as { code?: unknown; column?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : String(error);
  if (code in sqlStates) {
    const field = typeof e.column === 'string' && e.column ? e.column : message.split(':')[0] ?? sqlStates[code]!;
    const text = asTsCalls(message);
    // PD010: the queue is at its max_size (backpressure), not bad input.
    if (code === 'PD010') return new PgDrainError('queue_full', text, { field, cause: error });
    // Bad input the database checked: a ValidationError as the TS checks throw.
    const rule = text.startsWith(`${field}: `) ? text.slice(field.length + 2) : text;
    return new ValidationError(field, rule, { cause: error });
  }
  if ((code === '42883' || code === '3F000' || code === '42P01') && /\bjobs\b/.test(message)) {
    return new PgDrainError('not_migrated', `the jobs schema is missing or out of date (${message}): run pgdrain migrate`, { cause: error });
  }
  // 0A000: what was asked needs something this database lacks (pg_cron, pg_net); the message names it.
  if (code === '0A000') return new PgDrainError('unsupported', message, { cause: error });
  if (code === '42501') return new PgDrainError('permission_denied', message, { cause: error });
  if (badValue.has(code)) return new PgDrainError('invalid_argument', `invalid value: ${message}`, { cause: error });
  if (Object.hasOwn(exhausted, code)) {
    // Nothing of the statement was done: a drain's jobs it could not settle run again once their leases expire.
    return new PgDrainError('resources_exhausted', `database out of resources (SQLSTATE ${code}: ${message}): `
      + `${exhausted[code]}. Nothing the statement did was kept; jobs a drain ran but could not settle run again `
      + 'once their leases expire', { cause: error });
  }
  // 55000 is generic: only its "database … is not currently accepting connections" (ALTER DATABASE … ALLOW_CONNECTIONS false).
  if (unavailable.has(code) || code.startsWith('08') || (code === '55000' && /is not currently accepting connections/.test(message))
      || /Connection terminated|connect ECONNREFUSED|timeout expired|encountered a connection error and is not queryable|proxy request failed, cannot connect|Network connection lost/i.test(message)) {
    return new PgDrainError('database_unavailable', `database unavailable: ${message}`, { cause: error });
  }
  return error;
}
