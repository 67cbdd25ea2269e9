// Batch tasks at their edges (src/batch-run.ts, define-task.ts batchLookup):
// answers a handler gets wrong (promises for items, getters and proxies that
// throw, Errors of another realm), batch tasks found where taskNames does not
// list them, and the overloads that refuse `batch` on a plain handler (its
// ts-expect-error lines are checked by `npx tsc -p tsconfig.test.json`).
import vm from 'node:vm';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, defineTask, drain, publish, type BatchContext, type BatchItem, type JobContext, type Task,
  type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
const driver = { ...db.driver, close: async () => {} };
const queueWith = (tasks: TaskMap = {}) => createQueue({ driver, tasks });
// drain() itself: createQueue copies tasks with a spread, which would read (and throw in) a getter.
const drainOf = (tasks: TaskMap) => drain({ db: driver, tasks, publish: (t, b, o) => publish(driver, t, b, o) }, 10, deadline());

type N = { n: number };
interface Row { task: string; status: string; error: string | null }
/** Every job: its task, its state ('success' …, or 'queued' with its attempt), its error's first line. */
const rows = () => sql<Row>(`select coalesce(j.task, q.task) as task, coalesce(j.status::text, 'queued ' || q.attempt) as status,
                                    split_part(coalesce(j.error, q.last_error), E'\\n', 1) as error
                             from jobs.job_queue q full join jobs.job j using (job_id) order by job_id`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('a batch answer', () => {
  it('of promises (jobs.map(async …) without Promise.all) retries each job naming the rule; none rejects unhandled', async () => {
    const items: Promise<unknown>[] = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const q = queueWith({
        send: defineTask('b.send', async (jobs: BatchItem<N>[]) => jobs.map(async ({ body }) => {
          const item = (async () => {
            await new Promise((r) => setTimeout(r, 20));
            if (body.n === 1) throw new Error(`send ${body.n} failed`);
            return { sent: body.n };
          })();
          items.push(item);
          return item;
        }) as never, { batch: true }),
      });
      await q.publishBulk([0, 1, 2].map((n) => ({ task: 'b.send', body: { n } })));
      expect(await q.drain(10, deadline())).toMatchObject({ claimed: 3, retried: 3, succeeded: 0 });
      await Promise.allSettled(items);
      await new Promise((r) => setTimeout(r, 20)); // past the tick that reports an unhandled rejection
      expect(unhandled).toEqual([]);
      expect((await rows()).map((r) => [r.status, r.error])).toEqual([0, 1, 2].map((i) => ['queued 1',
        `TypeError: batch handler of b.send: item ${i} is a Promise: return await Promise.all(…) of them, so each item is a result or an Error`]));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('of promises of the wrong length, or beside an item that throws when read: none rejects unhandled', async () => {
    const items: Promise<unknown>[] = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const failing = () => {
      const item = (async () => {
        await new Promise((r) => setTimeout(r, 20));
        throw new Error('lost');
      })();
      items.push(item);
      return item;
    };
    try {
      const q = queueWith({
        // one item too many: the length is wrong, so no item is read one by one
        longer: defineTask('b.longer', async (jobs: BatchItem[]) => [...jobs, null].map(failing) as never, { batch: true }),
        // a thenable whose then getter throws, before the promise
        getter: defineTask('b.getter2', async (jobs: BatchItem[]) => jobs.map((_, i) => (i === 0
          ? { get then(): never { throw new Error('then getter'); } } : failing())) as never, { batch: true }),
      });
      await q.publishBulk([{ task: 'b.longer' }, { task: 'b.longer' }, { task: 'b.getter2' }, { task: 'b.getter2' }]);
      expect(await q.drain(10, deadline())).toMatchObject({ claimed: 4, retried: 4, succeeded: 0 });
      // Past the items' rejections and the tick that reports them unhandled; only then handled here.
      await new Promise((r) => setTimeout(r, 100));
      expect(unhandled).toEqual([]);
      expect((await Promise.allSettled(items)).map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected']);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('holding an Error of another realm (node:vm) retries its job with its message, as a plain throw of one does', async () => {
    const q = queueWith({
      batch: defineTask('b.realm', async (jobs: BatchItem[]) => jobs.map((j, i) => (i === 0
        ? vm.runInNewContext('new Error("card declined")') as unknown : { ok: j.job.id })), { batch: true }),
      plain: defineTask('p.realm', async () => {
        throw vm.runInNewContext('new RangeError("card declined")');
      }),
    });
    await q.publishBulk([{ task: 'b.realm' }, { task: 'b.realm' }, { task: 'p.realm' }]);
    expect(await q.drain(10, deadline())).toMatchObject({ claimed: 3, retried: 2, succeeded: 1 });
    expect((await rows()).map((r) => [r.task, r.status, r.error])).toEqual([
      ['b.realm', 'queued 1', 'Error: card declined'], ['b.realm', 'success', null], ['p.realm', 'queued 1', 'RangeError: card declined']]);
  });

  it('that throws when read (a getter, a revoked Proxy) is the call\'s throw: every job retried with it, none left to time out', async () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    const q = queueWith({
      getter: defineTask('b.getter', async (jobs: BatchItem[]) => {
        const answer = jobs.map(() => 'ok');
        Object.defineProperty(answer, 1, { get: () => { throw new Error('item getter broke'); } });
        return answer;
      }, { batch: true }),
      revoked: defineTask('b.revoked', async (jobs: BatchItem[]) => jobs.map(() => proxy), { batch: true }),
      length: defineTask('b.length', async (jobs: BatchItem[]) => new Proxy(jobs.map(() => 'ok'), {
        get: (target, key) => {
          if (key === 'length') throw new Error('length broke');
          return target[key as never];
        },
      }), { batch: true }),
      plain: defineTask('p.revoked', async () => {
        throw proxy;
      }),
    });
    await q.publishBulk(['b.getter', 'b.getter', 'b.revoked', 'b.length', 'p.revoked'].map((task) => ({ task, timeoutSeconds: 1 })));
    expect(await q.drain(10, deadline())).toMatchObject({ claimed: 5, retried: 5 });
    expect((await rows()).map((r) => [r.task, r.status, r.error])).toEqual([
      ['b.getter', 'queued 1', 'Error: item getter broke'],
      ['b.getter', 'queued 1', 'Error: item getter broke'],
      ['b.revoked', 'queued 1', "TypeError: Cannot perform 'getPrototypeOf' on a proxy that has been revoked"],
      ['b.length', 'queued 1', 'Error: length broke'],
      ['p.revoked', 'queued 1', 'thrown a value that cannot be read (a revoked Proxy, a getter that throws)'],
    ]);
  });
});

describe('a batch task found by its handler', () => {
  it('held by a class instance runs as a batch (taskNames does not walk instances)', async () => {
    const calls: number[] = [];
    class MailTasks {
      send = defineTask('mail.send', async (jobs: BatchItem<N>[]) => {
        calls.push(jobs.length);
        return jobs.map((j) => j.body.n);
      }, { batch: true });
      plain = defineTask('mail.plain', async (body: N) => body.n);
    }
    await queueWith().publishBulk([0, 1, 2].map((n) => ({ task: n < 2 ? 'mail.send' : 'mail.plain', body: { n } })));
    expect(await drainOf({ mail: new MailTasks() } as unknown as TaskMap)).toMatchObject({ claimed: 3, succeeded: 3 });
    expect(calls).toEqual([2]);
  });

  it('beside an export whose getter throws still runs as a batch; only that export\'s jobs fail', async () => {
    const calls: number[] = [];
    const tasks = {
      get broken(): unknown {
        throw new Error('config missing');
      },
      mail: { send: defineTask('mail.send', async (jobs: BatchItem[]) => { calls.push(jobs.length); }, { batch: true }) },
    } as TaskMap;
    await queueWith().publishBulk(['mail.send', 'mail.send', 'broken'].map((task) => ({ task })));
    expect(await drainOf(tasks)).toMatchObject({ claimed: 3, succeeded: 2, retried: 1 });
    expect(calls).toEqual([2]);
    expect((await rows()).map((r) => [r.task, r.status, r.error])).toEqual([
      ['mail.send', 'success', null], ['mail.send', 'success', null], ['broken', 'queued 1', 'Error: config missing']]);
  });

  it('is a handler (a Proxy) that throws when its batch marker is read: its job is retried, the drain goes on', async () => {
    const trap = new Proxy(async () => null, { get() { throw new Error('trap read'); } });
    await queueWith().publishBulk([{ task: 'trapped' }, { task: 'plain' }]);
    expect(await drainOf({ trapped: trap, plain: async () => null } as TaskMap))
      .toMatchObject({ claimed: 2, succeeded: 1, retried: 1 });
    expect((await rows()).map((r) => [r.task, r.status, r.error])).toEqual([
      ['trapped', 'queued 1', 'Error: trap read'], ['plain', 'success', null]]);
  });
});

interface Mail { to: string }

describe('defineTask types', () => {
  it('refuse { batch } on a handler that does not type-check as a batch handler (tsc -p tsconfig.test.json)', () => {
    const q = queueWith();
    const plain = async (mail: Mail) => ({ sent: mail.to });
    // @ts-expect-error a plain handler would get an array of { body, job }
    const a: Task<Mail, { sent: string }> = q.defineTask('m.a', plain, { batch: true });
    // @ts-expect-error as above
    const b: Task<Mail, { sent: string }> = defineTask('m.b', plain, { batch: { maxSize: 5 } });
    // @ts-expect-error a batch call has no ctx.job
    q.defineTask('m.c', async (jobs: BatchItem<Mail>[], ctx: JobContext) => jobs.map(() => ctx.job.id), { batch: true });
    // @ts-expect-error its answer is one item per job, or nothing
    q.defineTask('m.d', async (jobs: BatchItem<Mail>[]) => ({ sent: jobs.length }), { batch: true });
    // @ts-expect-error as above
    defineTask('m.e', async (jobs: BatchItem<Mail>[]) => 42, { batch: { maxSize: 10 } });
    // @ts-expect-error a transactional task is not a batch (refused at runtime too)
    expect(() => defineTask('m.f', async (_: Mail, ctx) => ctx.db.query('select 1'), { transactional: true, batch: true }))
      .toThrow('options.batch: cannot be combined with transactional: true');

    // What compiles: a batch handler, and plain ones with batch false or absent.
    const ok = q.defineTask('m.g', async (jobs: BatchItem<Mail>[], ctx: BatchContext) => jobs.map(() => ctx.signal.aborted),
                            { batch: true });
    const plainOk: Task<Mail, { sent: string }> = defineTask('m.h', plain, { batch: false });
    const tx = q.defineTask('m.i', async (_: Mail, ctx) => ctx.db.query('select 1'), { transactional: true, batch: undefined });
    // Typed publish: a Mail, not an array of items.
    expect([ok, plainOk, tx].map((t) => typeof t.publish)).toEqual(['function', 'function', 'function']);
    void [a, b];
  });
});

describe('a batch task defined or replaced while a drain runs', () => {
  it('is looked up for each job, as a plain task is: the new definition runs, as a batch', async () => {
    const tasks: TaskMap = {};
    const q = queueWith(tasks);
    tasks.late = defineTask('b.late', async (jobs: BatchItem[]) => jobs.map(() => ({ version: 1 })), { batch: true });
    await q.publish('b.late');
    let ended = 0;
    const stop = new AbortController();
    // After the first job ended, the task is replaced and a second job published; the drain lingers for it.
    const report = await drain({
      db: driver, tasks, publish: (t, b, o) => publish(driver, t, b, o),
    }, 10, deadline(), {
      lingerMs: 100_000, pollMs: 100, signal: stop.signal,
      onJobEnd: () => {
        if (++ended === 2) return stop.abort();
        tasks.late = defineTask('b.late', async (jobs: BatchItem[]) => jobs.map(() => ({ version: 2, size: jobs.length })),
          { batch: true });
        void q.publish('b.late');
      },
    });
    expect(report).toMatchObject({ claimed: 2, succeeded: 2 });
    expect(await sql(`select result from jobs.job order by job_id`)).toEqual([
      { result: { version: 1 } }, { result: { version: 2, size: 1 } }]);
  });
});
