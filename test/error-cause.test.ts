// A handler's error as the job keeps it, when the reason is not in the Error's
// own message: Node's fetch throws `TypeError: fetch failed` with the reason
// (`connect ECONNREFUSED …`, a DNS failure) in its `cause`; an AggregateError
// holds its reasons in `errors`; a thrown Symbol or function is no JSON. Over
// a real PostgreSQL: the stored error (jobs.job.error) and the report's failure.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, defineTask, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

function queueWith(tasks: TaskMap) {
  return createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
}

async function failWith(handler: () => Promise<unknown>): Promise<{ stored: string; reported: string }> {
  const q = queueWith({ boom: handler });
  const id = await q.publish('boom', {}, { maxRetries: 0 });
  const report = await q.drain(10, Date.now() + 120_000);
  expect(report).toMatchObject({ claimed: 1, failed: 1 });
  const [row] = await sql<{ error: string }>('select error from jobs.job where job_id = $1', [id]);
  return { stored: row!.error, reported: report.failures[0]!.error };
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('an error whose reason is in its cause', () => {
  it('keeps the cause chain: fetch failed, caused by the refused connection', async () => {
    const { stored, reported } = await failWith(async () => {
      const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
      throw new TypeError('fetch failed', { cause: new Error('socket hang up', { cause: refused }) });
    });
    expect(stored).toMatch(/^TypeError: fetch failed\n/);
    expect(stored).toMatch(/\nCaused by: Error: socket hang up\n[^]*\nCaused by: Error: connect ECONNREFUSED 127\.0\.0\.1:9\n/);
    expect(reported).toBe(stored);
  });

  it('a cause that is not an Error is written as JSON; a cycle of causes ends', async () => {
    const { stored } = await failWith(async () => { throw new Error('upstream', { cause: { status: 503 } }); });
    expect(stored).toMatch(/\nCaused by: \{"status":503\}$/);
    const cyclic = await failWith(async () => {
      const a = new Error('a');
      const b = new Error('b', { cause: a });
      (a as { cause?: unknown }).cause = b;
      throw a;
    });
    expect(cyclic.stored).toMatch(/\nCaused by: Error: b\n[^]*\nCaused by: \(a cause already shown above\)$/);
  });

  it('an AggregateError lists its errors', async () => {
    const { stored } = await failWith(async () => {
      throw new AggregateError([new Error('replica 1 down'), new Error('replica 2 down')], 'all replicas failed');
    });
    expect(stored).toMatch(/^AggregateError: all replicas failed\n/);
    expect(stored).toMatch(/\n\[errors\[0\]\] Error: replica 1 down\n[^]*\n\[errors\[1\]\] Error: replica 2 down\n/);
  });
});

describe('a thrown value JSON cannot write', () => {
  it('a Symbol or a function is named, not "undefined"', async () => {
    expect((await failWith(async () => { throw Symbol('quota'); })).stored).toBe('non-Error thrown: Symbol(quota)');
    expect((await failWith(async () => { throw function onQuota() {}; })).stored).toBe('non-Error thrown: function onQuota');
  });
});

describe('a hostile error: its readable parts are kept, the drain never throws', () => {
  it('a stack that is not a string: the name and message (describe threw: an unhandled rejection, the job "timed out")', async () => {
    const { stored } = await failWith(async () => {
      const error = new RangeError('quota');
      Object.defineProperty(error, 'stack', { value: 42 });
      throw error;
    });
    expect(stored).toBe('RangeError: quota');
  });

  it('a cause getter, an errors list or a cause that cannot be read loses only its part', async () => {
    const getter = await failWith(async () => {
      const error = new Error('the real reason');
      Object.defineProperty(error, 'cause', { get() { throw new Error('no'); } });
      throw error;
    });
    expect(getter.stored).toMatch(/^Error: the real reason\n[^]*\n\(thrown a value that cannot be read/);
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const { stored } = await failWith(async () => {
      const inner = new AggregateError([], 'all down');
      Object.defineProperty(inner, 'errors', { value: new Proxy([], { get() { throw new Error('no'); } }) });
      throw new Error('outer reason', { cause: new Error('middle', { cause: inner }) });
    });
    expect(stored).toMatch(/^Error: outer reason\n[^]*\nCaused by: Error: middle\n[^]*\nCaused by: AggregateError: all down\n[^]*\(thrown a value/);
    expect((await failWith(async () => { throw new Error('kept', { cause: revoked.proxy }); })).stored).toMatch(/^Error: kept\n/);
    const siblings = await failWith(async () => {
      const unreadable = new Error('unreadable');
      Object.defineProperty(unreadable, 'stack', { get() { throw new Error('no'); } });
      throw new AggregateError([new Error('replica 1 down'), unreadable, new Error('replica 3 down')], 'all replicas failed');
    });
    expect(siblings.stored).toMatch(/\n\[errors\[0\]\] Error: replica 1 down\n[^]*\n\[errors\[1\]\] \(thrown a value that cannot be read[^]*\n\[errors\[2\]\] Error: replica 3 down\n/);
  });

  it('a tree of errors (10 on each of 5 levels) shows its first 50 and stays under the cut', async () => {
    // Short stacks, so that what is shown fits under the cut.
    const tree = (depth: number): Error => Object.assign(depth === 0 ? new Error('leaf')
      : new AggregateError(Array.from({ length: 10 }, () => tree(depth - 1)), `level ${depth}`), { stack: `level ${depth}` });
    const { stored } = await failWith(async () => { throw tree(5); });
    expect([...stored].length).toBeLessThanOrEqual(8192);
    const { stored: small } = await failWith(async () => {
      throw new AggregateError(Array.from({ length: 10 }, () => tree(2)), 'wide');
    });
    expect(small).toContain('(not shown: more causes than a job\'s error keeps)');
    expect(small.match(/\[errors\[\d\]\] level/g)).toHaveLength(50);
  });
});

describe("a batch call's error: its text is made once, not once per job", () => {
  // describe() reads the cause chain and cuts what it built: a batch of 500 whose error's cause held
  // 1 MB of text (an HTTP client's, with the response body) held the event loop 10 s, made 500 times.
  it('a throw, and one Error returned for every job: its cause read once each', async () => {
    let reads = 0;
    const costly = () => {
      const error = new Error('upstream failed');
      const cause = new Error('the response body');
      Object.defineProperty(error, 'cause', { get: () => { reads++; return cause; } });
      return error;
    };
    const q = queueWith({
      thrown: defineTask('thrown', async () => { throw costly(); }, { batch: { maxSize: 50 } }),
      returned: defineTask('returned', async (jobs: unknown[]) => { const error = costly(); return jobs.map(() => error); },
                           { batch: { maxSize: 50 } }),
    });
    for (const task of ['thrown', 'returned']) {
      reads = 0;
      await q.publishBulk(Array.from({ length: 50 }, () => ({ task, maxRetries: 0 })));
      expect(await q.drain(50, Date.now() + 120_000)).toMatchObject({ claimed: 50, failed: 50 });
      expect(reads).toBe(1);
      const rows = await sql<{ error: string }>('select distinct error from jobs.job where task = $1', [task]);
      expect(rows).toHaveLength(1);
      expect(rows[0]!.error).toMatch(/^Error: upstream failed\n[^]*\nCaused by: Error: the response body\n/);
    }
  });
});
