// A drain's handler lookup (src/tasks.ts TaskLookup): tasks defined under
// another export name (export const send = defineTask('email.send', …)) are
// found without walking the module's exports for each job, and still as the
// exports are now: reassigned, moved, added while the drain runs, or broken.
import { beforeEach, describe, expect, it } from 'vitest';
import { defineTask, drain, publish, publishBulk, type DrainOptions, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import * as live from './fixtures/live-tasks.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
const driver = { ...db.driver, close: async () => {} };
// drain() itself: createQueue copies the top of a module with a spread.
const drainOf = (tasks: TaskMap, batchSize = 10, options: DrainOptions = {}) =>
  drain({ db: driver, tasks, publish: (t, b, o) => publish(driver, t, b, o) }, batchSize, deadline(), options);
const publishAll = (tasks: string[]) => publishBulk(driver, tasks.map((task) => ({ task }))); // in this order
/** Every job, in order: its task, and its result or its state ('queued' with its attempt) and error's first line. */
const outcomes = () => sql<{ task: string; outcome: unknown }>(
  `select coalesce(j.task, q.task) as task,
          coalesce(j.result, to_jsonb('queued ' || q.attempt || ': ' || split_part(q.last_error, E'\\n', 1))) as outcome
   from jobs.job_queue q full join jobs.job j using (job_id) order by job_id`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

/** target behind a Proxy that counts its walks: each listing of its keys (Object.entries, Object.keys). */
function counted<T extends object>(target: T): { proxy: T; walks: () => number } {
  let walks = 0;
  const proxy = new Proxy(target, {
    ownKeys(t) {
      walks++;
      return Reflect.ownKeys(t);
    },
  });
  return { proxy, walks: () => walks };
}

describe('a drain of tasks defined under other export names', () => {
  it('walks the exports a bounded number of times, not once per job', async () => {
    const nested = counted({ digest: defineTask('digest.daily', async () => 'digest') });
    const top = counted({
      sendEmail: defineTask('email.send', async () => 'sent'),
      mail: nested.proxy,
      ...Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`plain${i}`, async () => i])),
    });
    const tasks = top.proxy as TaskMap;
    await publishAll(Array.from({ length: 200 }, (_, i) => (i % 4 === 0 ? 'digest.daily' : i % 4 === 1 ? 'plain7' : 'email.send')));
    expect(await drainOf(tasks, 25)).toMatchObject({ claimed: 200, succeeded: 200 });
    // One walk for the drain's start (hasTransactionalTask), one for the defined names: a walk per lookup made 301.
    expect(top.walks()).toBeLessThanOrEqual(2);
    expect(nested.walks()).toBeLessThanOrEqual(2);
    expect(await sql(`select result, count(*)::int as n from jobs.job group by result order by n`)).toEqual([
      { result: 'digest', n: 50 }, { result: 7, n: 50 }, { result: 'sent', n: 100 }]);
  });

  it('beside an export that throws when read (a getter, a Proxy function): only that export\'s jobs fail', async () => {
    const trap = new Proxy(async () => null, { get() { throw new Error('trap read'); } }); // its task, its markers
    const tasks = {
      get broken(): unknown {
        throw new Error('config missing');
      },
      trap,
      sendEmail: defineTask('email.send', async () => 'sent'),
    } as TaskMap;
    await publishAll(['email.send', 'broken', 'trap', 'email.send']);
    expect(await drainOf(tasks)).toMatchObject({ claimed: 4, succeeded: 2, retried: 2 });
    expect(await outcomes()).toEqual([
      { task: 'email.send', outcome: 'sent' }, { task: 'broken', outcome: 'queued 1: Error: config missing' },
      { task: 'trap', outcome: 'queued 1: Error: trap read' }, { task: 'email.send', outcome: 'sent' }]);
  });
});

describe('a job\'s handler', () => {
  it('is looked up once per job: an export that is a getter is read once, and what it answered is what runs', async () => {
    let reads = 0;
    const tasks = {
      // Its reads alternate between a batch task and a plain one: a second read could run the other.
      get flip(): unknown {
        return ++reads % 2 === 1
          ? defineTask('flip', async (jobs: unknown[]) => jobs.map(() => 'batch'), { batch: true })
          : async () => 'plain';
      },
    } as TaskMap;
    await publishAll(['flip', 'flip', 'flip', 'flip']);
    expect(await drainOf(tasks)).toMatchObject({ claimed: 4, succeeded: 4 });
    expect(reads).toBe(5); // one by the drain's start (hasTransactionalTask), then one per job
    expect((await outcomes()).map((o) => o.outcome)).toEqual(['plain', 'batch', 'plain', 'batch']);
  });
});

describe('exports that change while a drain runs', () => {
  it('a live binding reassigned, definitions moved between exports, a task added: each next job runs what is there now', async () => {
    live.replace(1);
    const tasks: TaskMap = { live: live as unknown as TaskMap };
    // Each job's end changes the exports, then publishes the next job; the drain lingers for it.
    const steps = [
      () => live.replace(2), // live.deliver: a new definition under the same export
      () => live.swap(), // live.deliver: now under another export
      () => (tasks.added = defineTask('live.append', async () => 'added')), // a new export
    ];
    const next = ['live.deliver', 'live.deliver', 'live.append'];
    await publishAll(['live.deliver']);
    let ended = 0;
    const stop = new AbortController();
    const report = await drainOf(tasks, 10, {
      lingerMs: 100_000, pollMs: 100, signal: stop.signal,
      onJobEnd: () => {
        if (ended === steps.length) return stop.abort();
        steps[ended]!();
        void publish(driver, next[ended++]!);
      },
    });
    expect(report).toMatchObject({ claimed: 4, succeeded: 4 });
    expect(await outcomes()).toEqual([
      { task: 'live.deliver', outcome: { version: 1 } }, { task: 'live.deliver', outcome: { version: 2 } },
      { task: 'live.deliver', outcome: { version: 2 } }, { task: 'live.append', outcome: 'added' }]);
  });
});
