// The SQL layer called as users call it: plain SQL over a real PostgreSQL.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';
import { yearLike } from './support/future-year.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;

const sqlError = (text: string, params?: unknown[]) => sqlErrorOf(sql, text, params);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('publish', () => {
  it('fills defaults: now, 60 s, priority 0, 3 retries', async () => {
    const { id } = await one<{ id: string }>(`select jobs.publish('math.sum', '{"a":1}') as id`);
    const row = await one(`select task, body, timeout::float8 as timeout, priority, max_retries, attempt,
                                  lease_until, scheduled_at <= now() as due from jobs.job_queue where job_id = $1`, [id]);
    expect(row).toEqual({ task: 'math.sum', body: { a: 1 }, timeout: 60, priority: 0, max_retries: 3,
                          attempt: 0, lease_until: null, due: true });
  });

  it('takes positional scheduled_at, timeout, priority, max_retries', async () => {
    const { id } = await one<{ id: string }>(
      `select jobs.publish('a.b', null, '2030-01-01T00:00:00Z', 5.5, 7, 0) as id`);
    const row = await one(`select scheduled_at, timeout::float8 as timeout, priority, max_retries from jobs.job_queue where job_id = $1`, [id]);
    expect(row).toEqual({ scheduled_at: new Date('2030-01-01T00:00:00Z'), timeout: 5.5, priority: 7, max_retries: 0 });
  });

  it('publishes inside the caller transaction: rollback leaves nothing', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query('begin');
    await client.query(`select jobs.publish('tx.job')`);
    await client.query('rollback');
    await client.end();
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });

  it('works from a trigger and a procedure', async () => {
    await sql(`create table if not exists public.signup (email text)`);
    await sql(`create or replace function public.on_signup() returns trigger language plpgsql as $$
               begin perform jobs.publish('email.welcome', jsonb_build_object('to', new.email)); return new; end $$`);
    await sql(`drop trigger if exists signup_job on public.signup`);
    await sql(`create trigger signup_job after insert on public.signup for each row execute function public.on_signup()`);
    await sql(`create or replace procedure public.enqueue_report() language plpgsql as $$
               begin perform jobs.publish('report.daily', null, null, 30, 5); end $$`);
    await sql(`insert into public.signup values ('ada@example.com')`);
    await sql(`call public.enqueue_report()`);
    const rows = await sql(`select task, body from jobs.job_queue order by job_id`);
    expect(rows).toEqual([{ task: 'email.welcome', body: { to: 'ada@example.com' } }, { task: 'report.daily', body: null }]);
  });

  it('publish_bulk writes any number in one statement, nulls taking defaults, ids in order', async () => {
    const rows = await sql<{ id: string }>(`select * from jobs.publish_bulk(array(
      select row('bulk.n', jsonb_build_object('i', i), null, null, case when i = 3 then 9 end, null)::jobs.bulk_job
      from generate_series(1, 1000) i)) as id`);
    expect(rows).toHaveLength(1000);
    const ids = rows.map((r) => Number(r.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    const stored = await one(`select count(*)::int as n, count(*) filter (where priority = 9)::int as p9,
                                     min(timeout)::int as t, min(max_retries) as r from jobs.job_queue`);
    expect(stored).toEqual({ n: 1000, p9: 1, t: 60, r: 3 });
  });

  it('publish_arrays takes one array per field (bodies a JSON array), delays from now, ids in order', async () => {
    const { ids } = await one<{ ids: string[] }>(`select jobs.publish_arrays(
      array['arr.a', 'arr.b', 'arr.c'], '[{"i": 1}, null, [3]]', array[null, null, '${yearLike(2030)}-01-01Z']::timestamptz[],
      array[null, 3600, null]::float8[], array[null, 5, null]::numeric[], null, array[0, null, null]) as ids`);
    expect(ids.map(Number)).toEqual([...ids.map(Number)].sort((a, b) => a - b));
    const rows = await sql(`select task, body, scheduled_at > now() + interval '59 minutes' as later,
                                   timeout::float8 as timeout, max_retries from jobs.job_queue order by job_id`);
    expect(rows).toEqual([
      { task: 'arr.a', body: { i: 1 }, later: false, timeout: 60, max_retries: 0 },
      { task: 'arr.b', body: null, later: true, timeout: 5, max_retries: 3 },
      { task: 'arr.c', body: [3], later: true, timeout: 60, max_retries: 3 },
    ]);
  });
});

describe('bad input is rejected with its own SQLSTATE, naming the field, writing nothing', () => {
  const cases: [string, string, string, string][] = [
    ['null task', `select jobs.publish(null)`, 'PD001', 'task'],
    ['empty task', `select jobs.publish('')`, 'PD001', 'task'],
    ['task with a space', `select jobs.publish('send email')`, 'PD001', 'task'],
    ['task with empty segment', `select jobs.publish('email..send')`, 'PD001', 'task'],
    ['task too long', `select jobs.publish(repeat('a', 201))`, 'PD001', 'task'],
    ['zero timeout', `select jobs.publish('a', null, null, 0)`, 'PD002', 'timeout_seconds'],
    ['negative timeout', `select jobs.publish('a', null, null, -1)`, 'PD002', 'timeout_seconds'],
    ['huge timeout', `select jobs.publish('a', null, null, 100000)`, 'PD002', 'timeout_seconds'],
    ['timeout under a millisecond', `select jobs.publish('a', null, null, 0.0009)`, 'PD002', 'timeout_seconds'],
    ['negative max_retries', `select jobs.publish('a', null, null, null, null, -1)`, 'PD003', 'max_retries'],
    ['priority out of range', `select jobs.publish('a', null, null, null, 2000000000)`, 'PD004', 'priority'],
    ['empty serial_key', `select jobs.publish('a', serial_key => '')`, 'PD012', 'serial_key'],
    ['attributes not an object', `select jobs.publish('a', attributes => '[1]')`, 'PD014', 'attributes'],
    ['consume 0', `select * from jobs.consume(0)`, 'PD005', 'n'],
    ['consume too many', `select * from jobs.consume(10001)`, 'PD005', 'n'],
    ['null topic', `select * from jobs.consume_topic(null, 1)`, 'PD006', 'pattern'],
    ['empty topic', `select * from jobs.consume_topic('', 1)`, 'PD006', 'pattern'],
    ['settle not an array', `select jobs.settle('{}')`, 'PD008', 'outcomes'],
    ['settle bad outcome', `select jobs.settle('[{"id":1,"attempt":1,"outcome":"maybe"}]')`, 'PD008', 'outcomes'],
    ['settle_arrays null outcome', `select jobs.settle_arrays('{1,2}', '{1,1}', '{ack,NULL}')`, 'PD008', 'outcomes'],
    ['settle_arrays null id', `select jobs.settle_arrays('{1,NULL}', '{1,1}', '{ack,nack}')`, 'PD008', 'outcomes'],
    ['settle_arrays null attempt', `select jobs.settle_arrays('{1,2}', '{NULL,1}', '{ack,fail}')`, 'PD008', 'outcomes'],
    ['settle_arrays bad outcome', `select jobs.settle_arrays('{1}', '{1}', '{done}')`, 'PD008', 'outcomes'],
    // Its argument is name, as purge_queue's and delete_queue's (it said queue).
    ['create_queue bad name', `select jobs.create_queue('bad name')`, 'PD009', 'name'],
    ['create_queue null name', `select jobs.create_queue(null)`, 'PD009', 'name'],
  ];
  it.each(cases)('%s', async (_name, text, code, field) => {
    const error = await sqlError(text);
    expect(error.code).toBe(code);
    expect(error.column).toBe(field);
    expect(error.message.startsWith(`${field}: `)).toBe(true);
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });

  it('publish_bulk names the first bad element and writes none of them', async () => {
    const error = await sqlError(`select jobs.publish_bulk(array[
      ('ok.one', null, null, null, null, null)::jobs.bulk_job,
      ('ok.two', null, null, -5, null, null)::jobs.bulk_job,
      ('bad task', null, null, null, null, null)::jobs.bulk_job])`);
    expect(error.code).toBe('PD002');
    expect(error.column).toBe('jobs[2].timeout');
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });

  // The checks look at each distinct task once and at option arrays as a
  // whole: a bad element behind good ones, or the first one bad, is still found.
  it.each([
    ['a bad task behind repeats of a good one', `array['a', 'a', 'a', 'no way', 'a']`, '', 'PD001', 'jobs[4].task'],
    ['a null task behind a good one', `array['a', null]`, '', 'PD001', 'jobs[2].task'],
    ['the first task bad, the rest good', `array['a..b', 'a', 'a']`, '', 'PD001', 'jobs[1].task'],
    ['a task too long', `array['a', repeat('b', 201)]`, '', 'PD001', 'jobs[2].task'],
    ['a zero timeout', `array['a', 'a', 'a']`, `, timeouts => array[null, null, 0]`, 'PD002', 'jobs[3].timeout'],
    ['a priority out of range', `array['a', 'a']`, `, priorities => array[1, 2000000]`, 'PD004', 'jobs[2].priority'],
    ['negative max_retries', `array['a', 'a']`, `, max_retries => array[-1, null]`, 'PD003', 'jobs[1].max_retries'],
    ['a negative delay', `array['a', 'a']`, `, delays => array[null, -1e9]`, 'PD007', 'jobs[2].delay'],
    ['a NaN delay', `array['a']`, `, delays => array['NaN']::float8[]`, 'PD007', 'jobs[1].delay'],
    ['an infinite delay', `array['a']`, `, delays => array['Infinity']::float8[]`, 'PD007', 'jobs[1].delay'],
    ['a delay past ten years', `array['a', 'a']`, `, delays => array[1, 1e15]`, 'PD007', 'jobs[2].delay'],
    ['a timeout under a millisecond', `array['a']`, `, timeouts => array[1e-300]`, 'PD002', 'jobs[1].timeout'],
  ])('publish_arrays finds %s and writes nothing', async (_name, tasks, options, code, field) => {
    const error = await sqlError(`select jobs.publish_arrays(${tasks}${options})`);
    expect(error.code).toBe(code);
    expect(error.column).toBe(field);
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });

  it.each([
    ['fewer bodies', `select jobs.publish_arrays(array['a', 'b'], '[1]')`],
    ['bodies not an array', `select jobs.publish_arrays(array['a'], '{"x": 1}')`],
    ['a longer option array', `select jobs.publish_arrays(array['a'], null, null, null, null, array[1, 2])`],
  ])('publish_arrays rejects %s (PD017, jobs) and writes nothing', async (_name, text) => {
    const error = await sqlError(text);
    expect(error.code).toBe('PD017');
    expect(error.column).toBe('jobs');
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });

  it('nack rejects a schedule_at in the past, or infinite', async () => {
    const { id } = await one<{ id: string }>(`select jobs.publish('a') as id`);
    await sql(`select * from jobs.consume(1)`);
    for (const at of [`now() - interval '1 day'`, `'infinity'::timestamptz`]) {
      const error = await sqlError(`select jobs.nack($1::bigint, 'x', ${at})`, [id]);
      expect(error.code).toBe('PD007');
      expect(error.column).toBe('schedule_at');
    }
    expect(await one(`select attempt, lease_until is not null as leased from jobs.job_queue`)).toEqual({ attempt: 1, leased: true });
  });

  it('an infinite scheduled_at is refused on every path, so no claim ever meets one', async () => {
    // The claim orders by scheduled_at and answers it in epoch seconds, which an infinite time has not.
    // Publishing names the field (PD007); the table's constraint backs every other path.
    for (const [text, field] of [[`select jobs.publish('a', null, 'infinity')`, 'scheduled_at'],
                                 [`select jobs.publish('a', null, '-infinity')`, 'scheduled_at'],
                                 [`select jobs.publish_arrays(array['a', 'a'], null, array[now(), 'infinity'::timestamptz])`, 'jobs[2].scheduled_at'],
                                 [`select jobs.publish_bulk(array[('a', null, '-infinity', null, null, null)::jobs.bulk_job])`, 'jobs[1].scheduled_at']]) {
      const error = await sqlError(text!);
      expect(error.code, text).toBe('PD007');
      expect(error.column, text).toBe(field);
      expect(error.message, text).toMatch(/must be a finite time/);
    }
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
    const { id } = await one<{ id: string }>(`select jobs.publish('a') as id`);
    await sql(`select * from jobs.consume(1)`);
    // A retry at infinity is named too (PD008 retry_at), before the constraint would meet it.
    const error = await sqlError(`select jobs.settle_arrays(array[$1::bigint], '{1}', '{nack}', null, '{x}', array['infinity'::timestamptz])`, [id]);
    expect({ code: error.code, column: error.column }).toEqual({ code: 'PD008', column: 'retry_at' });
    expect(await one(`select count(*)::int as n, bool_and(isfinite(scheduled_at)) as finite from jobs.job_queue`)).toEqual({ n: 1, finite: true });
  });
});

describe('consume', () => {
  it('orders by priority desc, then scheduled_at, then job_id; skips future jobs', async () => {
    await sql(`select jobs.publish('a.low', null, now() - interval '1 hour', null, 0)`);
    await sql(`select jobs.publish('a.high', null, now() - interval '1 minute', null, 5)`);
    await sql(`select jobs.publish('a.older', null, now() - interval '2 hours', null, 0)`);
    await sql(`select jobs.publish('a.future', null, now() + interval '1 hour', null, 100)`);
    const rows = await sql<{ task: string; attempt: number }>(`select task, attempt from jobs.consume(10)`);
    expect(rows.map((r) => r.task)).toEqual(['a.high', 'a.older', 'a.low']);
    expect(rows.every((r) => r.attempt === 1)).toBe(true);
    const leases = await one(`select count(*)::int as n from jobs.job_queue
                              where lease_until between started_at + make_interval(secs => timeout)
                                                    and clock_timestamp() + make_interval(secs => timeout)`);
    expect(leases).toEqual({ n: 3 });
  });

  it('consume_topic: % is the only wildcard; _ and \\ match themselves', async () => {
    for (const t of ['email.send', 'email.digest.weekly', 'emailXsend', 'email_send', 'sms.send']) {
      await sql(`select jobs.publish($1)`, [t]);
    }
    const topic = async (p: string) =>
      (await sql<{ task: string }>(`select task from jobs.consume_topic($1, 100) order by task`, [p])).map((r) => r.task);
    expect(await topic('email.%')).toEqual(['email.digest.weekly', 'email.send']);
    expect(await topic('email_send')).toEqual(['email_send']); // not emailXsend
    expect(await topic('%.send')).toEqual(['sms.send']);
    expect(await topic(`x' or true --`)).toEqual([]); // a value, never SQL
  });

  it('SQL tasks go only to a claim whose pattern names them, never to consume(n) or a topic-less drain', async () => {
    await sql(`insert into jobs.sql_task (name) values ('app.fn') on conflict do nothing`); // allowed (jobs.allow_sql_task would want the function)
    await sql(`select jobs.publish('sql:app.fn', priority => 9), jobs.publish('email.send')`);
    expect((await sql<{ task: string }>('select task from jobs.consume(10)')).map((r) => r.task)).toEqual(['email.send']);
    expect((await sql<{ task: string }>(`select task from jobs.consume_topic('sql:%', 10)`)).map((r) => r.task))
      .toEqual(['sql:app.fn']);
  });

  it('8 parallel consumers over 5,000 jobs never receive the same job and miss none', async () => {
    await sql(`select jobs.publish_bulk(array(select row('par.job', null, null, null, null, null)::jobs.bulk_job
               from generate_series(1, 5000)))`);
    const consumer = async () => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      const seen: string[] = [];
      for (;;) {
        const { rows } = await client.query<{ job_id: string }>(`select job_id from jobs.consume(37)`);
        if (rows.length === 0) break;
        seen.push(...rows.map((r) => r.job_id));
        await client.query(`select jobs.ack($1::bigint[])`, [rows.map((r) => r.job_id)]);
      }
      await client.end();
      return seen;
    };
    const all = (await Promise.all(Array.from({ length: 8 }, consumer))).flat();
    expect(all).toHaveLength(5000);
    expect(new Set(all).size).toBe(5000);
    expect(await one(`select count(*)::int as queued, (select count(*)::int from jobs.job where status = 'success') as done
                      from jobs.job_queue`)).toEqual({ queued: 0, done: 5000 });
  });
});

describe('claim_json', () => {
  it('answers the claimed ids as one comma-separated text, in the order of its other columns, whatever their length', async () => {
    // As JSON strings of up to 10 characters, V8's JSON.parse would intern each id (the drain splits this text).
    const seq = "pg_get_serial_sequence('jobs.job_queue', 'job_id')";
    const { last } = await one<{ last: string | null }>(`select pg_sequence_last_value(${seq}::regclass)::text as last`);
    await sql(`select setval(${seq}, 9999999998, false)`);
    try {
      const { ids } = await one<{ ids: string[] }>(`select jobs.publish_arrays(array['a', 'a', 'a'], '[{"n": 0}, {"n": 1}, {"n": 2}]')::text[] as ids`);
      expect(ids).toEqual(['9999999998', '9999999999', '10000000000']);
      const { r } = await one<{ r: { count: number; jobs: { id: string; body: { n: number }[] } } }>(
        `select jobs.claim_json(10, worker_id => 'w') as r`);
      expect(r.count).toBe(3);
      expect(typeof r.jobs.id).toBe('string');
      const claimed = r.jobs.id.split(',');
      expect(claimed.map((id, i) => [id, r.jobs.body[i]!.n]).sort()).toEqual([[ids[0], 0], [ids[1], 1], [ids[2], 2]].sort());
    } finally {
      await sql(last === null ? `select setval(${seq}, 1, false)` : `select setval(${seq}, $1::bigint)`, last === null ? [] : [last]);
    }
  });
});

describe('ack and nack', () => {
  it('ack moves the job to jobs.job as success with result and duration', async () => {
    const { id } = await one<{ id: string }>(`select jobs.publish('a') as id`);
    await sql(`select * from jobs.consume(1)`);
    expect(await one(`select jobs.ack($1::bigint, '{"ok":true}') as ok`, [id])).toEqual({ ok: true });
    const row = await one(`select status, result, attempts, duration_ms >= 0 as timed from jobs.job where job_id = $1`, [id]);
    expect(row).toEqual({ status: 'success', result: { ok: true }, attempts: 1, timed: true });
    expect(await one(`select jobs.ack($1::bigint) as ok`, [id])).toEqual({ ok: false }); // already settled
  });

  it("a release sent again after it committed (its reply lost) cannot touch the next delivery, another worker's", async () => {
    // A release gives the attempt back: the next claim is attempt 1 again, and only the worker tells them apart.
    const { id } = await one<{ id: string }>(`select jobs.publish('a') as id`);
    const claim = (worker: string) => one<{ r: { count: number; jobs: { attempt: number[] } } }>(
      `select jobs.claim_json(1, worker_id => $1) as r`, [worker]);
    const settle = (outcome: string, worker: string) => one<{ r: Record<string, number> }>(
      `select jobs.settle_arrays(array[$1::bigint], '{1}', array[$2], worker_id => $3) as r`, [id, outcome, worker]);
    expect((await claim('A')).r.jobs.attempt).toEqual([1]);
    expect((await settle('release', 'A')).r).toMatchObject({ released: 1, stale: 0 });
    expect((await claim('B')).r.jobs.attempt).toEqual([1]);
    expect((await settle('release', 'A')).r).toMatchObject({ released: 0, stale: 1 }); // the resend
    expect((await settle('ack', 'A')).r).toMatchObject({ succeeded: 0, stale: 1 });
    // …and through a drain's claim_json, which settles as its own worker.
    expect((await one<{ r: { settled: Record<string, number> } }>(
      `select jobs.claim_json(1, worker_id => 'A', ids => array[$1::bigint], attempts => '{1}', outcomes => '{release}') as r`,
      [id])).r.settled).toMatchObject({ released: 0, stale: 1 });
    expect(await one(`select worker_id, lease_until is not null as leased from jobs.job_queue`)).toEqual({ worker_id: 'B', leased: true });
    expect((await settle('ack', 'B')).r).toMatchObject({ succeeded: 1 });
    expect(await one(`select status, worker_id from jobs.job where job_id = $1`, [id])).toEqual({ status: 'success', worker_id: 'B' });
  });

  it('ack of a job never consumed is refused', async () => {
    const { id } = await one<{ id: string }>(`select jobs.publish('a') as id`);
    expect(await one(`select jobs.ack($1::bigint) as ok`, [id])).toEqual({ ok: false });
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 1 });
  });

  it('retries end in failure after exactly max_retries + 1 attempts, with growing backoff', async () => {
    const { id } = await one<{ id: string }>(`select jobs.publish('a', null, null, null, null, 3) as id`);
    let now = new Date('2030-01-01T00:00:00Z');
    await sql(`update jobs.job_queue set scheduled_at = $1`, [now]);
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) {
      const rows = await sql<{ attempt: number }>(`select attempt from jobs.consume(1, $1)`, [now]);
      expect(rows).toEqual([{ attempt }]);
      await sql(`select jobs.nack($1::bigint, $2, null, $3)`, [id, `boom ${attempt}`, now]);
      const q = await sql<{ scheduled_at: Date }>(`select scheduled_at from jobs.job_queue where job_id = $1`, [id]);
      if (attempt < 4) {
        delays.push(q[0]!.scheduled_at.getTime() - now.getTime());
        expect(await sql(`select * from jobs.consume(1, $1::timestamptz - interval '1 ms')`, [q[0]!.scheduled_at])).toEqual([]);
        now = new Date(q[0]!.scheduled_at.getTime() + 1); // JS dates hold ms, the database µs
      } else {
        expect(q).toEqual([]);
      }
    }
    // equal jitter: retry k waits between 2.5*2^(k-1) and 5*2^(k-1) seconds
    expect(delays[0]).toBeGreaterThanOrEqual(2500);
    expect(delays[0]).toBeLessThanOrEqual(5000);
    expect(delays[1]).toBeGreaterThanOrEqual(delays[0]!);
    expect(delays[2]).toBeGreaterThanOrEqual(delays[1]!);
    expect(delays[2]).toBeGreaterThanOrEqual(10000);
    const ended = await one(`select status, attempts, error from jobs.job where job_id = $1`, [id]);
    expect(ended).toEqual({ status: 'failure', attempts: 4, error: 'boom 4' });
  });

  it('nack with schedule_at retries exactly then', async () => {
    const { id } = await one<{ id: string }>(`select jobs.publish('a') as id`);
    await sql(`select * from jobs.consume(1)`);
    const at = new Date(`${yearLike(2031)}-05-05T00:00:00Z`); // a nack's schedule_at may not be in the past
    await sql(`select jobs.nack($1::bigint, 'later', $2::timestamptz)`, [id, at]);
    expect(await one(`select scheduled_at, last_error, lease_until from jobs.job_queue`))
      .toEqual({ scheduled_at: at, last_error: 'later', lease_until: null });
  });

  it('array forms settle a whole batch in one statement', async () => {
    await sql(`select jobs.publish_bulk(array(select row('b', null, null, null, null, 0)::jobs.bulk_job from generate_series(1, 6)))`);
    const ids = (await sql<{ job_id: string }>(`select job_id from jobs.consume(6) order by job_id`)).map((r) => r.job_id);
    // One result per job id (null: none); a shorter array is refused (PD008 results, test/settle-input).
    expect(await one(`select jobs.ack($1::bigint[], array['{"n":1}','{"n":2}',null]::jsonb[]) as n`, [ids.slice(0, 3)])).toEqual({ n: 3 });
    expect(await one(`select jobs.nack($1::bigint[], array['e4','e5']) as n`, [ids.slice(3, 5)])).toEqual({ n: 2 });
    expect(await one(`select jobs.release($1::bigint[]) as n`, [ids.slice(5)])).toEqual({ n: 1 });
    const ended = await sql(`select status, result, error from jobs.job order by job_id`);
    expect(ended).toEqual([
      { status: 'success', result: { n: 1 }, error: null }, { status: 'success', result: { n: 2 }, error: null },
      { status: 'success', result: null, error: null },
      { status: 'failure', result: null, error: 'e4' }, { status: 'failure', result: null, error: 'e5' },
    ]);
    expect(await one(`select attempt, lease_until from jobs.job_queue`)).toEqual({ attempt: 0, lease_until: null });
  });

  it('a delivery settled once cannot be settled again: an ack or fail after its nack, release or expiry is stale', async () => {
    const { id } = await one<{ id: string }>(`select jobs.publish('a', null, null, 10) as id`);
    const settle = async (outcome: string, attempt: number) => (await one<{ r: Record<string, number> }>(
      `select jobs.settle_arrays(array[$1::bigint], array[$2::integer], array[$3]) as r`, [id, attempt, outcome])).r;
    await sql(`select * from jobs.consume(1)`);
    expect(await one(`select jobs.nack($1::bigint, 'boom') as ok`, [id])).toEqual({ ok: true });
    // waiting for its retry: attempt 1 is over
    expect(await one(`select jobs.ack($1::bigint) as ok`, [id])).toEqual({ ok: false });
    expect(await settle('ack', 1)).toMatchObject({ succeeded: 0, stale: 1 });
    expect(await settle('fail', 1)).toMatchObject({ failed: 0, stale: 1 });
    expect(await settle('nack', 1)).toMatchObject({ retried: 0, stale: 1 });

    // expired by a claim, not yet handed out again
    await sql(`select * from jobs.consume(1, now() + interval '1 hour')`); // attempt 2
    await sql(`select jobs.expire(now => now() + interval '2 hours')`);
    expect(await one(`select attempt, lease_until from jobs.job_queue`)).toEqual({ attempt: 2, lease_until: null });
    expect(await settle('ack', 2)).toMatchObject({ succeeded: 0, stale: 1 });
    expect(await one(`select count(*)::int as n from jobs.job`)).toEqual({ n: 0 });
  });

  it('a late settle from an expired delivery does not touch the newer one', async () => {
    const { id } = await one<{ id: string }>(`select jobs.publish('a', null, null, 10) as id`);
    await sql(`select * from jobs.consume(1)`);
    await sql(`select * from jobs.consume(1, now() + interval '11 seconds')`); // redelivered: attempt 2
    const r = await one<{ r: Record<string, number> }>(
      `select jobs.settle(jsonb_build_array(jsonb_build_object('id', $1::bigint, 'attempt', 1, 'outcome', 'ack'))) as r`, [id]);
    expect(r.r).toMatchObject({ succeeded: 0, stale: 1 });
    expect(await one(`select attempt from jobs.job_queue`)).toEqual({ attempt: 2 });
  });
});

describe('lease expiry without a daemon', () => {
  it('shows in jobs.expired and is handed out again by the next consume, counting an attempt', async () => {
    const { id } = await one<{ id: string }>(`select jobs.publish('slow.job', null, null, 30, null, 1) as id`);
    await sql(`select * from jobs.consume(1)`);
    expect(await sql(`select job_id from jobs.running`)).toEqual([{ job_id: id }]);
    await sql(`update jobs.job_queue set lease_until = now() - interval '1 second', started_at = now() - interval '31 seconds'`);
    expect(await sql(`select job_id from jobs.expired`)).toEqual([{ job_id: id }]);
    expect(await sql(`select job_id, attempt from jobs.consume(1)`)).toEqual([{ job_id: id, attempt: 2 }]);
    // second expiry: retries spent (max_retries 1), so it ends as a failure
    await sql(`update jobs.job_queue set lease_until = now() - interval '1 second'`);
    expect(await sql(`select * from jobs.consume(1)`)).toEqual([]);
    const ended = await one<{ status: string; error: string; attempts: number }>(
      `select status, error, attempts from jobs.job where job_id = $1`, [id]);
    expect(ended.status).toBe('failure');
    expect(ended.attempts).toBe(2);
    expect(ended.error).toMatch(/^timed out/);
  });

  it('expiry follows the injected clock', async () => {
    await sql(`select jobs.publish('a', null, null, 60)`);
    await sql(`select * from jobs.consume(1)`);
    expect(await sql(`select * from jobs.consume(1, now() + interval '59 seconds')`)).toEqual([]);
    expect(await sql(`select attempt from jobs.consume(1, now() + interval '61 seconds')`)).toEqual([{ attempt: 2 }]);
  });
});

describe('views', () => {
  it('jobs.all and jobs.stats show every state', async () => {
    await sql(`select jobs.publish('v.pending')`);
    await sql(`select jobs.publish('v.scheduled', null, now() + interval '1 hour')`);
    await sql(`select jobs.publish('v.done', null, now() - interval '1 minute', null, 10)`);
    const [done] = await sql<{ job_id: string }>(`select job_id from jobs.consume(1)`);
    await sql(`select jobs.ack($1::bigint)`, [done!.job_id]);
    const states = await sql(`select task, state from jobs.all order by task`);
    expect(states).toEqual([{ task: 'v.done', state: 'success' }, { task: 'v.pending', state: 'pending' },
                            { task: 'v.scheduled', state: 'scheduled' }]);
    const stats = await sql(`select task, state, jobs::int as jobs from jobs.stats order by task`);
    expect(stats).toEqual([{ task: 'v.done', state: 'success', jobs: 1 }, { task: 'v.pending', state: 'pending', jobs: 1 },
                           { task: 'v.scheduled', state: 'scheduled', jobs: 1 }]);
  });
});
