import type { Context } from 'hono';
import { PgDrainError, type UnrecordedOutcomes } from '../errors.js';
import { sliceUnits } from '../error-text.js';
import { asCommand } from '../hint-calls.js';
import { unrecordedOf } from '../unrecorded.js';

/**
 * The body of every error answer: `{ "error": { "code", "message", "field" } }`; a drain's (POST /drain) whose last
 * settle failed, `unrecorded` too: the outcomes it could not record, by kind (PgDrainError.unrecorded); one whose
 * claim's answer was lost, `lostClaimReleased`: that claim's jobs given back (PgDrainError.lostClaimReleased).
 */
export interface ErrorBody {
  error: { code: string; message: string; field: string | null; unrecorded?: UnrecordedOutcomes; lostClaimReleased?: number };
}

/** An error the HTTP layer answers with its own status (401, 404, 413, 429, …; 499: the request ended first, answered to no one). */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(readonly status: 400 | 401 | 403 | 404 | 413 | 429 | 499 | 503, readonly code: string, message: string,
              readonly field: string | null = null, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

// What a PgDrainError code means to an HTTP caller. Anything unknown is a 500.
const statusOf: Record<string, 400 | 429 | 503> = {
  invalid_argument: 400,
  queue_full: 429, // backpressure: the message says which queue, and how full
  database_unavailable: 503,
  not_migrated: 503,
  resources_exhausted: 503, // the server's lock table or disk: retrying later may succeed
};

/** What an error answers: its status, code, message, field and headers, and a drain's counts (DrainCounts). */
export interface ErrorAnswer extends DrainCounts {
  status: number; code: string; message: string; field: string | null; headers: Record<string, string>;
}

/** What a drain's error carries beyond its message, which a 503 hides: what PgDrainError says of the jobs. */
interface DrainCounts {
  unrecorded?: UnrecordedOutcomes;
  lostClaimReleased?: number;
}

/**
 * What any error answers. Known errors keep their message and field;
 * anything else becomes a bare 500 (`report` gets the real error, for the
 * server's log), so no stack trace or driver detail reaches the caller.
 */
export function errorAnswer(error: unknown, report?: (error: unknown) => void): ErrorAnswer {
  // A 503's or 500's message says nothing of them (withUnrecorded's words are in the message it hides): the counts stay.
  // Only drain()'s (withUnrecorded): an `unrecorded` of another shape, set by other code, is left out, not copied.
  const unrecorded = unrecordedOf(error);
  const lost = (error as { lostClaimReleased?: unknown } | null)?.lostClaimReleased; // withLostClaimReleased's: a count over 0
  const answer = bounded(bareAnswer(error, report));
  return { ...answer, ...(unrecorded && { unrecorded }),
           ...(Number.isSafeInteger(lost) && (lost as number) > 0 && { lostClaimReleased: lost as number }) };
}

/** The most characters (UTF-16 units) of an answer's field, and of its message, the cut marker included. */
const FIELD_CHARS = 200;
const MESSAGE_CHARS = 800;

/**
 * answer with its field and message cut, as the Lambda cuts a refusal: both
 * echo the caller's text (an unknown key is the field, a path the 404's
 * message), which made a 5000-character key a 10 KB answer. The field keeps
 * its first FIELD_CHARS, and the message starts with the field so cut; each
 * cut on a code-point boundary, marked with …
 */
function bounded(answer: ErrorAnswer): ErrorAnswer {
  const { field, message } = answer;
  if (message.length <= MESSAGE_CHARS && (field === null || field.length <= FIELD_CHARS)) return answer;
  const shortField = field !== null && field.length > FIELD_CHARS ? `${sliceUnits(field, FIELD_CHARS - 1)}…` : field;
  const whole = field !== null && message.startsWith(`${field}: `) ? `${shortField}: ${message.slice(field.length + 2)}` : message;
  const shortMessage = whole.length > MESSAGE_CHARS ? `${sliceUnits(whole, MESSAGE_CHARS - 1)}…` : whole;
  return { ...answer, field: shortField, message: shortMessage };
}

function bareAnswer(error: unknown, report?: (error: unknown) => void): ErrorAnswer {
  if (error instanceof HttpError) {
    return { status: error.status, code: error.code, message: error.message, field: error.field, headers: error.headers };
  }
  if (error instanceof PgDrainError && error.code in statusOf) {
    const status = statusOf[error.code]!;
    // A database message may carry host names or SQL: say only what kind of failure it was. A hint's
    // TS call (queues.create) as the command: no route of this API creates a queue, and its caller writes no TS.
    const message = status === 503 ? publicMessage(error.code) : asCommand(error.message);
    if (status === 503) report?.(error);
    return { status, code: error.code, message, field: error.field ?? null, headers: {} };
  }
  report?.(error);
  return { status: 500, code: 'internal', message: 'internal error; the server log has the details', field: null, headers: {} };
}

/**
 * A body that stopped arriving because its client went, or was cut off
 * (`pgdrain serve`'s --request-timeout): Node fails the read with an
 * ECONNRESET, which would be a 500 logged as a database outage. It is a 499
 * no one reads, not logged. Anything else is as it was.
 */
export function endedRequest(c: Context, error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== 'ECONNRESET' || !c.req.raw.signal.aborted || error instanceof PgDrainError) return error;
  return new HttpError(499, 'request_ended', 'the request ended before its body had arrived', null);
}

/** Turns any error into a JSON answer (errorAnswer's). */
export function errorResponse(c: Context, error: unknown, report?: (error: unknown) => void): Response {
  const { status, code, message, field, headers, ...counts } = errorAnswer(error, report);
  for (const [name, value] of Object.entries(headers)) c.header(name, value);
  return send(c, status, code, message, field, counts);
}

function publicMessage(code: string): string {
  if (code === 'not_migrated') return 'the jobs schema is missing or out of date: run pgdrain migrate';
  return code === 'resources_exhausted' ? 'database out of resources (the server log has which)' : 'database unavailable';
}

function send(c: Context, status: number, code: string, message: string, field: string | null,
              counts: DrainCounts = {}): Response {
  const body: ErrorBody = { error: { code, message, field, ...counts } };
  return c.json(body, status as 400);
}
