// A handler that throws an event, not an Error: the Neon driver rejects with
// its WebSocket's error event (an ErrorEvent: "Network connection lost."),
// which a handler's own query passes on. Its type, message and error are
// getters on its prototype (undici's and ws's ErrorEvent, workerd's, Node's
// Event), so as JSON it was '{}' and the job kept 'non-Error thrown: {}'.
// Over a real PostgreSQL: the stored error (jobs.job.error) and the report's.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();

/** An ErrorEvent as undici and workerd make one: private state, its fields getters on the prototype. */
class ErrorEvent extends Event {
  readonly #message: string;
  readonly #error: unknown;
  constructor(type: string, init: { message?: string; error?: unknown } = {}) {
    super(type);
    this.#message = init.message ?? '';
    this.#error = init.error;
  }
  get message(): string { return this.#message; }
  get error(): unknown { return this.#error; }
}

/** ws's: no Event underneath, its state under symbols, `error` null when the socket gave none. */
const kType = Symbol('kType');
const kMessage = Symbol('kMessage');
const kError = Symbol('kError');
class WsErrorEvent {
  [kType]: string;
  [kMessage]: string;
  [kError]: unknown;
  constructor(type: string, options: { message?: string; error?: unknown } = {}) {
    this[kType] = type;
    this[kMessage] = options.message ?? '';
    this[kError] = options.error ?? null;
  }
  get type(): string { return this[kType]; }
  get message(): string { return this[kMessage]; }
  get error(): unknown { return this[kError]; }
}

async function failWith(thrown: unknown): Promise<string> {
  const q = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: { boom: async () => { throw thrown; } } });
  const id = await q.publish('boom', {}, { maxRetries: 0 });
  const report = await q.drain(10, Date.now() + 120_000);
  expect(report).toMatchObject({ claimed: 1, failed: 1 });
  const [row] = await db.sql<{ error: string }>('select error from jobs.job where job_id = $1', [id]);
  expect(report.failures[0]!.error).toBe(row!.error);
  return row!.error;
}

beforeEach(() => db.sql('truncate jobs.job_queue, jobs.job'));

describe('a thrown event', () => {
  it('an ErrorEvent keeps its class, type and message, and its error as the cause', async () => {
    const refused = new Error('connect ECONNREFUSED 127.0.0.1:5432');
    const stored = await failWith(new ErrorEvent('error', { message: 'Network connection lost.', error: refused }));
    expect(stored).toMatch(/^non-Error thrown: ErrorEvent \{"type":"error","message":"Network connection lost\."\}\n/);
    expect(stored).toMatch(/\nCaused by: Error: connect ECONNREFUSED 127\.0\.0\.1:5432\n {4}at /);
  });

  it('ws\'s ErrorEvent (symbols, no Event underneath, error null): its type and message', async () => {
    expect(await failWith(new WsErrorEvent('error', { message: 'read ECONNRESET' })))
      .toBe('non-Error thrown: WsErrorEvent {"type":"error","message":"read ECONNRESET"}');
  });

  it('an Event keeps its type; one given as an Error\'s cause is shown there', async () => {
    expect(await failWith(new Event('close'))).toBe('non-Error thrown: Event {"type":"close"}');
    const stored = await failWith(new Error('query failed', { cause: new ErrorEvent('error', { message: 'socket closed' }) }));
    expect(stored).toMatch(/\nCaused by: ErrorEvent \{"type":"error","message":"socket closed"\}$/);
  });

  it('plain objects and class instances without such fields stay JSON, as before', async () => {
    expect(await failWith({ message: 'plain', type: 'x' })).toBe('non-Error thrown: {"message":"plain","type":"x"}');
    class Reply { status = 503; }
    expect(await failWith(new Reply())).toBe('non-Error thrown: {"status":503}');
    class Typed { code = 7; type(): string { return 'method'; } }
    expect(await failWith(new Typed())).toBe('non-Error thrown: {"code":7}');
  });
});

/** A CloseEvent as undici and workerd make one (Node 20 has none global): its code, reason and wasClean getters on the prototype. */
class CloseEvent extends Event {
  readonly #code: number;
  readonly #reason: string;
  readonly #wasClean: boolean;
  constructor(type: string, init: { code?: number; reason?: string; wasClean?: boolean } = {}) {
    super(type);
    this.#code = init.code ?? 0;
    this.#reason = init.reason ?? '';
    this.#wasClean = init.wasClean ?? false;
  }
  get code(): number { return this.#code; }
  get reason(): string { return this.#reason; }
  get wasClean(): boolean { return this.#wasClean; }
}

// Before: a CloseEvent kept only its type ('CloseEvent {"type":"close"}'), not why the socket closed.
it('a CloseEvent keeps its code, reason and wasClean', async () => {
  expect(await failWith(new CloseEvent('close', { code: 1006, reason: 'connection reset by the proxy' })))
    .toBe('non-Error thrown: CloseEvent {"type":"close","code":1006,"reason":"connection reset by the proxy","wasClean":false}');
});

describe('a thrown object whose inherited fields cannot be read', () => {
  it('a getter that throws loses only its part: the own fields stay, as before events were read', async () => {
    class ApiReply {
      code = 'E_QUOTA';
      get message(): string { throw new Error('body already consumed'); }
    }
    expect(await failWith(new ApiReply())).toBe('non-Error thrown: {"code":"E_QUOTA"}');
    class LostEvent extends Event {
      get message(): string { return 'socket closed'; }
      get error(): unknown { throw new Error('detached'); }
    }
    expect(await failWith(new LostEvent('error'))).toBe('non-Error thrown: LostEvent {"type":"error","message":"socket closed"}\n'
      + '(thrown a value that cannot be read (a revoked Proxy, a getter that throws))');
  });

  it('a Proxy whose has trap throws keeps its JSON', async () => {
    class Model { id = 7; }
    const trap = () => { throw new Error('trap'); };
    expect(await failWith(new Proxy(new Model(), { has: trap }))).toBe('non-Error thrown: {"id":7}');
  });

  // Before: instanceof ran the trap, and the whole error was 'thrown a value that cannot be read (...)'.
  it('a Proxy whose getPrototypeOf trap throws loses only its prototype: an Error keeps its stack, an object its JSON', async () => {
    const trap = () => { throw new Error('trap'); };
    expect(await failWith(new Proxy(new Error('boom'), { getPrototypeOf: trap }))).toMatch(/^Error: boom\n {4}at /);
    class Model { id = 7; }
    expect(await failWith(new Proxy(new Model(), { getPrototypeOf: trap }))).toBe('non-Error thrown: {"id":7}');
    expect(await failWith(new Error('query failed', { cause: new Proxy(new Model(), { getPrototypeOf: trap }) })))
      .toMatch(/\nCaused by: \{"id":7\}$/);
  });

  it('a field JSON cannot write (a BigInt) does not lose the others', async () => {
    class Odd extends Event { get message(): unknown { return 10n; } }
    expect(await failWith(new Odd('error'))).toBe('non-Error thrown: Odd {"type":"error","message":10}');
  });
});
