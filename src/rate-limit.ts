// Rate limits shared by every drain: a token bucket per key in the database
// (jobs.take_token, sql/0030_rate_limit.sql). A handler over its limit is
// snoozed: its job goes back until the next token, its attempt not spent.
import type { Queryable } from './db/driver.js';
import { translateError, ValidationError } from './errors.js';
import { SnoozeJob } from './job-errors.js';
import { fitsChars, isBlank, MAX_DELAY_SECONDS } from './options.js';
import { givenUpWith } from './send.js';

export interface RateLimitOptions {
  /** Calls allowed per `perSeconds`, and the most taken at once after a quiet spell (the bucket's size). */
  limit: number;
  /** The window `limit` is spread over: 100 per 60 s is one every 0.6 s. */
  perSeconds: number;
}

/**
 * ctx.rateLimit: takes a token for `key`, or throws a SnoozeJob until the next one.
 * signal (the job's, job-context.ts) gives the take up as a publish's is.
 */
export type RateLimit = (key: string, options: RateLimitOptions, signal?: AbortSignal) => Promise<void>;

const TAKE_TOKEN_SQL = 'select jobs.take_token($1, $2, $3) as wait';

/**
 * Takes one token of `key` (up to `limit` per `perSeconds`, shared by all who
 * use the key in this database). Answers 0 when taken, else the seconds until
 * the next token (none taken). `db` must not be a transaction that lives on:
 * the key's row stays locked until it ends, holding up every other taker.
 * When `signal` fires first, the take is given up as a publish is (send.ts
 * givenUpWith): it rejects with the signal's reason, and a driver that
 * honours the signal (pgDriver) cancels the statement, so no token is taken
 * late (one waiting on the key's row lock behind a long transaction).
 */
export async function takeToken(db: Queryable, key: string, options: RateLimitOptions,
                                signal?: AbortSignal): Promise<number> {
  const { limit, perSeconds } = checkRateLimit(key, options);
  try {
    const { rows } = await givenUpWith(db, signal).query<{ wait: number }>(TAKE_TOKEN_SQL, [key, limit, perSeconds]);
    return Number(rows[0]!.wait);
  } catch (error) {
    throw translateError(error);
  }
}

/** The ctx.rateLimit of the drains that query through `db`: made once per drain, shared by its jobs. */
export function rateLimiter(db: Queryable): RateLimit {
  return async (key, options, signal) => {
    const wait = await takeToken(db, key, options, signal);
    // Whole milliseconds, rounded up: never back before the token is there.
    if (wait > 0) throw new SnoozeJob({ delayMs: Math.min(Math.ceil(wait * 1000), MAX_DELAY_SECONDS * 1000) });
  };
}

function checkRateLimit(key: unknown, options: unknown): RateLimitOptions {
  if (typeof key !== 'string' || isBlank(key) || !fitsChars(key, 200) || key.includes('\0')) {
    throw new ValidationError('key', 'must be a non-empty string of at most 200 characters, not only whitespace, without NUL');
  }
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('options', 'must be { limit, perSeconds }');
  }
  const unknown = Object.keys(options).filter((k) => k !== 'limit' && k !== 'perSeconds');
  if (unknown.length > 0) throw new ValidationError('options', `unknown option ${unknown.map((k) => JSON.stringify(k)).join(', ')}`);
  const { limit, perSeconds } = options as { limit?: unknown; perSeconds?: unknown };
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > 1_000_000) {
    throw new ValidationError('options.limit', 'must be an integer from 1 to 1000000 (calls per perSeconds)');
  }
  if (typeof perSeconds !== 'number' || !(perSeconds >= 0.001 && perSeconds <= MAX_DELAY_SECONDS)) {
    throw new ValidationError('options.perSeconds', `must be a number of seconds from 0.001 to ${MAX_DELAY_SECONDS} (ten years)`);
  }
  return { limit, perSeconds };
}
