// A job's own dead-letter queue (pg-boss's send option deadLetter):
// jobs.publish(dead_letter), publish_arrays' dead_letters, TS deadLetter,
// POST /jobs and `pgdrain publish --dead-letter`. Failing for good, the job
// is copied there, whatever its queue's dead_letter; kept in jobs.job_queue
// and jobs.job (so redrive keeps it); jobs.delete_queue refuses a queue an
// active job names. Times come from the functions' `now`: nothing sleeps.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, FailJob } from '../src/index.js';
import type { Queryable } from '../src/db/driver.js';
import { publishBulk } from '../src/publish.js';
import { testDb } from './support/db.js';
import { postJobsTo } from './support/http-jobs.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queueWith = (tasks = {}) => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
const queue = queueWith();
const cli = (...args: string[]) => runCli(db.url, ...args);
const deadline = () => Date.now() + 120_000;
const one = async (text: string, params?: unknown[]) => (await sql<{ id: string }>(text, params))[0]!.id;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  await sql(`update jobs.queue set dead_letter = null`);
  await sql(`delete from jobs.queue where name <> 'default'`);
  // mail's failures go to mail_dead; a job of it may name its own: own_dead (defaults 5 s, 9 retries).
  await sql(`select jobs.create_queue('mail_dead'); select jobs.create_queue('mail', dead_letter => 'mail_dead')`);
  await sql(`select jobs.create_queue('own_dead', default_timeout => 5, default_max_retries => 9)`);
});

/** Publishes a job to mail with its own dead letter (and these options); returns its id. */
const publishOwn = (options = 'max_retries => 0', dead = 'own_dead') =>
  one(`select jobs.publish('mail.send', '{"to":"ada"}', queue => 'mail', priority => 7, attributes => '{"tenant":42}',
                           dead_letter => '${dead}', ${options})::text as id`);
const claim = async (q = 'mail') => expect(await sql(`select job_id from jobs.consume(10, queue => '${q}')`)).toHaveLength(1);

/** The jobs waiting in each queue but mail: where the dead letters went. */
const letters = () => sql(`select queue, task, priority, timeout::text, max_retries, last_error, attributes, dead_letter
                           from jobs.job_queue where queue <> 'mail' order by job_id`);
const letterOf = (id: string, error: string, attempts: number, queue = 'own_dead') => ({
  queue, task: 'mail.send', priority: 7, last_error: error, dead_letter: null,
  ...(queue === 'own_dead' ? { timeout: '5', max_retries: 9 } : { timeout: '60', max_retries: 0 }),
  attributes: { tenant: 42, dead_letter: { job_id: Number(id), queue: 'mail', error, attempts } },
});
/** The failed job's history: where it was to go. */
const history = (id: string) => sql(`select status, queue, dead_letter from jobs.job where job_id = $1`, [id]);

describe("a job with its own dead letter goes there when it fails for good, not to its queue's", () => {
  it('a nack with its retries spent (a retry is no dead letter)', async () => {
    const id = await publishOwn('max_retries => 1');
    await claim();
    await sql(`select jobs.nack($1::bigint, 'no')`, [id]);
    expect(await letters()).toEqual([]);
    await sql(`update jobs.job_queue set scheduled_at = now() where job_id = $1`, [id]);
    await claim();
    await sql(`select jobs.nack($1::bigint, 'no again')`, [id]);
    expect(await letters()).toEqual([letterOf(id, 'no again', 2)]);
    expect(await history(id)).toEqual([{ status: 'failure', queue: 'mail', dead_letter: 'own_dead' }]);
  });

  it('FailJob from a drain', async () => {
    const id = await publishOwn('max_retries => 3');
    const report = await queueWith({ mail: { send: () => { throw new FailJob('bounced'); } } }).drain(10, deadline(), { queue: 'mail' });
    expect(report.failed).toBe(1);
    expect((await letters()).map((l) => [l.queue, (l.attributes as { dead_letter: { job_id: number } }).dead_letter.job_id]))
      .toEqual([['own_dead', Number(id)]]);
  });

  it('an expired lease with no retries left', async () => {
    const id = await publishOwn();
    await claim();
    await sql(`select jobs.expire(now => now() + interval '1 hour')`);
    expect(await letters()).toEqual([letterOf(id, 'timed out: no ack within 60 seconds (attempt 1 of 1)', 1)]);
  });

  it('jobs.fail (queue.fail)', async () => {
    const id = await publishOwn();
    expect(await queue.fail([id], 'tenant deleted')).toBe(1);
    expect(await letters()).toEqual([letterOf(id, 'failed: tenant deleted', 0)]);
  });

  it('expiry of a waiting job (expires_at past)', async () => {
    const id = await publishOwn(`expires_at => now() + interval '1 minute'`);
    await sql(`select jobs.expire(now => now() + interval '1 hour')`);
    const [letter] = await letters();
    expect(letter).toMatchObject({ queue: 'own_dead', last_error: expect.stringMatching(/^expired: not started before /) });
    expect(await history(id)).toEqual([{ status: 'failure', queue: 'mail', dead_letter: 'own_dead' }]);
  });

  it('in a queue without a dead-letter queue, when no queue has one (the cheap early exit must not skip it)', async () => {
    await sql(`update jobs.queue set dead_letter = null`);
    const id = await one(`select jobs.publish('mail.send', queue => 'mail', max_retries => 0, dead_letter => 'own_dead')::text as id`);
    const other = await one(`select jobs.publish('mail.send', queue => 'mail', max_retries => 0)::text as id`);
    expect(await sql(`select job_id from jobs.consume(10, queue => 'mail')`)).toHaveLength(2);
    await sql(`select jobs.nack(array[$1, $2]::bigint[], array['a', 'b'])`, [id, other]);
    expect(await sql(`select queue, attributes->'dead_letter'->>'job_id' as failed from jobs.job_queue`))
      .toEqual([{ queue: 'own_dead', failed: id }]);
  });

  it("a job without one goes to its queue's as before, in the same batch as one with its own", async () => {
    const own = await publishOwn();
    const plain = await one(`select jobs.publish('mail.send', '{"to":"ada"}', queue => 'mail', priority => 7,
                                                 attributes => '{"tenant":42}', max_retries => 0)::text as id`);
    expect(await sql(`select job_id from jobs.consume(10, queue => 'mail')`)).toHaveLength(2);
    await sql(`select jobs.nack(array[$1, $2]::bigint[], array['x', 'x'])`, [own, plain]);
    expect(await letters()).toEqual([letterOf(own, 'x', 1), letterOf(plain, 'x', 1, 'mail_dead')]);
    expect(await history(plain)).toEqual([{ status: 'failure', queue: 'mail', dead_letter: null }]);
  });

  it('a cancel is no dead letter; the history keeps it on every end (ack, cancel, cancel_bulk, a cascade, complete)', async () => {
    const cancelled = await publishOwn();
    await sql(`select jobs.cancel($1)`, [cancelled]);
    const bulk = await publishOwn();
    await sql(`select jobs.cancel_bulk(array[$1::bigint])`, [bulk]);
    const completed = await publishOwn();
    await sql(`select jobs.complete(array[$1::bigint])`, [completed]);
    expect(await letters()).toEqual([]);
    // A failure's dependant is cancelled: only the failure is a dead letter.
    const failing = await publishOwn();
    const cascaded = await publishOwn(`depends_on => array[${failing}::bigint]`);
    await claim();
    await sql(`select jobs.nack($1::bigint, 'x')`, [failing]);
    expect((await letters()).map((l) => l.queue)).toEqual(['own_dead']);
    await sql(`delete from jobs.job_queue where queue = 'own_dead'`);
    const done = await publishOwn();
    const dependant = await publishOwn(`depends_on => array[${done}::bigint]`);
    await claim();
    await sql(`select jobs.ack($1::bigint)`, [done]);
    const ended = await sql(`select job_id::text as id, status, dead_letter from jobs.job order by job_id`);
    expect(ended).toEqual([
      { id: cancelled, status: 'cancelled', dead_letter: 'own_dead' }, { id: bulk, status: 'cancelled', dead_letter: 'own_dead' },
      { id: completed, status: 'success', dead_letter: 'own_dead' }, { id: failing, status: 'failure', dead_letter: 'own_dead' },
      { id: cascaded, status: 'cancelled', dead_letter: 'own_dead' }, { id: done, status: 'success', dead_letter: 'own_dead' }]);
    expect(await sql(`select job_id::text as id, dead_letter from jobs.job_queue`)).toEqual([{ id: dependant, dead_letter: 'own_dead' }]);
  });
});

describe('publishing it', () => {
  it('bad dead letters are refused with PD009 naming dead_letter (SQL), and nothing is written', async () => {
    await sql(`select jobs.create_queue('ops', dead_letter => 'mail')`);
    const bad: [string, RegExp][] = [
      ['bad name!', /must be a queue name/],
      ['nope', /no queue named 'nope'; create it first/],
      ['mail', /must name another queue than the job's own \('mail'\)/],
      // ops' dead letters go to mail: the job would come back to the queue it failed in.
      ['ops', /must not lead back to the job's queue 'mail': mail -> ops -> mail would be a loop/],
    ];
    for (const [dead, message] of bad) {
      await expect(sql(`select jobs.publish('t', queue => 'mail', dead_letter => $1)`, [dead]), dead)
        .rejects.toMatchObject({ code: 'PD009', column: 'dead_letter', message: expect.stringMatching(message) });
      await expect(sql(`select jobs.publish_arrays(array['t', 't', 't'], queue => 'mail', dead_letters => array[null, 'own_dead', $1])`, [dead]), dead)
        .rejects.toMatchObject({ code: 'PD009', column: 'jobs[3].dead_letter', message: expect.stringMatching(message) });
    }
    expect(await sql(`select 1 from jobs.job_queue`)).toEqual([]);
    // Into another queue, ops is fine.
    await sql(`select jobs.publish('t', dead_letter => 'ops')`);
  });

  it('TypeScript names the option: a bad name before any round trip, the database\'s checks as deadLetter too', async () => {
    await expect(queue.publish('t', null, { deadLetter: 'bad name!' }))
      .rejects.toMatchObject({ name: 'ValidationError', field: 'options.deadLetter' });
    await expect(queue.publishBulk([{ task: 't' }, { task: 't', deadLetter: '' }]))
      .rejects.toMatchObject({ name: 'ValidationError', field: 'jobs[1].deadLetter' });
    await expect(queue.publish('t', null, { queue: 'mail', deadLetter: 'nope' }))
      .rejects.toMatchObject({ code: 'invalid_argument', field: 'options.deadLetter', message: expect.stringMatching(/^options\.deadLetter: no queue named/) });
    await expect(queue.publish('t', null, { queue: 'mail', deadLetter: 'mail' }))
      .rejects.toMatchObject({ field: 'options.deadLetter', message: expect.stringMatching(/must name another queue/) });
    await expect(queue.publishBulk([{ task: 't' }, { task: 't', deadLetter: 'mail' }], 'mail'))
      .rejects.toMatchObject({ field: 'jobs[1].deadLetter', message: expect.stringMatching(/^jobs\[1\]\.deadLetter: must name another queue/) });
  });

  it('publish and publishBulk store it per job; a bulk without one sends no array and stores none', async () => {
    const a = await queue.publish('t', null, { queue: 'mail', deadLetter: 'own_dead' });
    const ids = await queue.publishBulk([{ task: 't', deadLetter: 'own_dead' }, { task: 't' }, { task: 't', deadLetter: 'mail_dead' }], 'mail');
    // Passes every statement on to the database, noting its parameters.
    const sent: (readonly unknown[])[] = [];
    const noting: Queryable = { query: (text, params) => { sent.push(params ?? []); return db.driver.query(text, params); } };
    const plain = await publishBulk(noting, [{ task: 't' }, { task: 't', priority: 2 }], 'mail');
    expect(sent).toHaveLength(1);
    expect(sent[0]![14]).toBeNull(); // dead_letters => $15
    const rows = await sql<{ id: string; dead_letter: string | null }>(`select job_id::text as id, dead_letter from jobs.job_queue order by job_id`);
    expect(rows).toEqual([a, ...ids, ...plain].map((id, i) => ({ id, dead_letter: ['own_dead', 'own_dead', null, 'mail_dead', null, null][i] })));
  });

  it('a dedupe replace takes the new publish\'s dead letter (none: none); keep leaves it', async () => {
    const id = await one(`select jobs.publish('t', queue => 'mail', dedupe_key => 'k', dead_letter => 'own_dead')::text as id`);
    const deadOf = async () => (await sql<{ d: string | null }>(`select dead_letter as d from jobs.job_queue where job_id = $1`, [id]))[0]!.d;
    await sql(`select jobs.create_queue('ops')`);
    expect(await one(`select jobs.publish('t', queue => 'mail', dedupe_key => 'k', dead_letter => 'ops')::text as id`)).toBe(id);
    expect(await deadOf()).toBe('own_dead');
    expect(await one(`select jobs.publish('t', queue => 'mail', dedupe_key => 'k', dedupe_mode => 'replace',
                                          dead_letter => 'ops')::text as id`)).toBe(id);
    expect(await deadOf()).toBe('ops');
    await sql(`select jobs.publish('t', queue => 'mail', dedupe_key => 'k', dedupe_mode => 'replace')`);
    expect(await deadOf()).toBeNull();
  });
});

describe('redrive and deleting queues', () => {
  it('redrive keeps it: failing again, the job goes to its own dead letter again', async () => {
    const id = await publishOwn();
    await queue.fail([id], 'first');
    await sql(`delete from jobs.job_queue where queue = 'own_dead'`);
    expect(await sql(`select jobs.redrive(job_ids => array[$1::bigint]) as n`, [id])).toEqual([{ n: 1 }]);
    expect(await sql(`select dead_letter from jobs.job_queue where job_id = $1`, [id])).toEqual([{ dead_letter: 'own_dead' }]);
    await queue.fail([id], 'second');
    expect((await letters()).map((l) => [l.queue, l.last_error])).toEqual([['own_dead', expect.stringMatching(/^failed: second/)]]);
  });

  it('jobs.delete_queue refuses a queue an active job names as its dead letter (PD009 name); once it ended, deletes it', async () => {
    const id = await publishOwn();
    await expect(sql(`select jobs.delete_queue('own_dead')`)).rejects.toMatchObject({ code: 'PD009', column: 'name',
      message: `name: queue 'own_dead' is the dead-letter queue of 1 active jobs of other queues (job ${id} first), published `
        + 'with it as their dead_letter: let them end, or cancel them (jobs.cancel_bulk), first' });
    await expect(queue.queues.delete('own_dead')).rejects.toMatchObject({ field: 'name', message: expect.stringMatching(/active jobs/) });
    await sql(`select jobs.cancel($1)`, [id]);
    expect(await sql(`select jobs.delete_queue('own_dead') as ok`)).toEqual([{ ok: true }]);
  });

  it("a job redriven after its dead-letter queue was deleted falls back to its queue's", async () => {
    const id = await publishOwn();
    await queue.fail([id], 'first');
    await sql(`delete from jobs.job_queue where queue = 'own_dead'`);
    expect(await sql(`select jobs.delete_queue('own_dead') as ok`)).toEqual([{ ok: true }]);
    await sql(`select jobs.redrive(job_ids => array[$1::bigint])`, [id]);
    await queue.fail([id], 'second');
    expect((await letters()).map((l) => l.queue)).toEqual(['mail_dead']);
  });
});

describe('HTTP and CLI', () => {
  const post = postJobsTo(queue);
  const deadOf = async (id: string) => (await sql<{ d: string | null }>(`select dead_letter as d from jobs.job_queue where job_id = $1`, [id]))[0]!.d;

  it('POST /jobs takes deadLetter (one, or per job of a bulk); bad ones answer 400 naming the field', async () => {
    const single = await post({ task: 't', queue: 'mail', deadLetter: 'own_dead' });
    expect(single.status).toBe(201);
    expect(await deadOf(single.body.id)).toBe('own_dead');
    const many = await post({ queue: 'mail', jobs: [{ task: 't' }, { task: 't', deadLetter: 'own_dead' }] });
    expect(many.status).toBe(201);
    expect([await deadOf(many.body.ids[0]), await deadOf(many.body.ids[1])]).toEqual([null, 'own_dead']);
    const bad: [unknown, string][] = [
      [{ task: 't', deadLetter: 'bad name!' }, 'deadLetter'],
      [{ task: 't', deadLetter: 'nope' }, 'deadLetter'],
      [{ task: 't', queue: 'mail', deadLetter: 'mail' }, 'deadLetter'],
      [{ queue: 'mail', jobs: [{ task: 't' }, { task: 't', deadLetter: 'mail' }] }, 'jobs[1].deadLetter'],
    ];
    for (const [body, field] of bad) {
      const r = await post(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body, JSON.stringify(body)).toMatchObject({ error: { field } });
    }
  });

  it('pgdrain publish --dead-letter; bad ones exit 2 naming the flag', async () => {
    const r = await cli('publish', 't', '--queue', 'mail', '--dead-letter', 'own_dead');
    expect(r).toMatchObject({ code: 0 });
    expect(await deadOf(r.stdout.trim())).toBe('own_dead');
    for (const [args, message] of [[['--dead-letter', 'bad name!'], /--dead-letter/], [['--dead-letter', 'nope'], /--dead-letter: no queue named 'nope'/],
                                   [['--queue', 'mail', '--dead-letter', 'mail'], /--dead-letter: must name another queue/]] as [string[], RegExp][]) {
      const b = await cli('publish', 't', ...args);
      expect(b.code, args.join(' ')).toBe(2);
      expect(b.stderr, args.join(' ')).toMatch(message);
    }
  });
});
