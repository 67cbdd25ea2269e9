// jobs.reschedule's max_retries and attempt (sql/0028), as graphile-worker's
// reschedule_jobs(..., attempts, max_attempts): in SQL, queue.reschedule and
// `pgdrain reschedule --max-retries/--attempts`.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, ValidationError } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const publish = async (args = '') => (await one<{ id: string }>(`select jobs.publish('t'${args})::text as id`)).id;
const row = (id: string) =>
  one<{ attempt: number; max_retries: number }>(`select attempt, max_retries from jobs.job_queue where job_id = $1`, [id]);

/** Claims the job (the only due one) and nacks it, due again at once; then where it is: waiting or failed. */
async function runAndFail(id: string): Promise<'waiting' | 'failure'> {
  expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id }]);
  await sql(`select jobs.nack($1::bigint, 'boom', now())`, [id]);
  const ended = await sql<{ status: 'failure' }>(`select status from jobs.job where job_id = $1`, [id]);
  return ended[0]?.status ?? 'waiting';
}

async function errorOf(p: Promise<unknown>): Promise<ValidationError> {
  const e = await p.then(() => null, (error: unknown) => error);
  expect(e).toBeInstanceOf(ValidationError);
  return e as ValidationError;
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('attempt / attempts', () => {
  it('set to 0 gives a job that spent attempts all its runs back (SQL)', async () => {
    const id = await publish(', max_retries => 2');
    expect([await runAndFail(id), await runAndFail(id)]).toEqual(['waiting', 'waiting']);
    expect(await row(id)).toEqual({ attempt: 2, max_retries: 2 }); // one run left
    expect(await one(`select jobs.reschedule($1::bigint[], attempt => 0) as n`, [[id]])).toEqual({ n: 1 });
    expect(await row(id)).toEqual({ attempt: 0, max_retries: 2 });
    // Three runs again (1 + max_retries): only the third failure ends it.
    expect([await runAndFail(id), await runAndFail(id), await runAndFail(id)]).toEqual(['waiting', 'waiting', 'failure']);
    expect(await one(`select attempts, error from jobs.job where job_id = $1`, [id])).toEqual({ attempts: 3, error: 'boom' });
  });

  it('queue.reschedule({ attempts }) sets the attempts spent; the next failure retries instead of failing', async () => {
    const id = await publish(', max_retries => 1');
    expect(await runAndFail(id)).toBe('waiting'); // attempt 1 of 2: the next failure would end it
    expect(await queue.reschedule([id], { attempts: 0 })).toBe(1);
    expect(await row(id)).toEqual({ attempt: 0, max_retries: 1 });
    expect(await runAndFail(id)).toBe('waiting');
  });
});

describe('max_retries / maxRetries', () => {
  it('raised lets a job on its last run retry (SQL)', async () => {
    const id = await publish(', max_retries => 0');
    expect(await one(`select jobs.reschedule($1::bigint[], max_retries => 1) as n`, [[id]])).toEqual({ n: 1 });
    expect(await row(id)).toEqual({ attempt: 0, max_retries: 1 });
    expect(await runAndFail(id)).toBe('waiting');
    expect(await runAndFail(id)).toBe('failure');
  });

  it('queue.reschedule({ maxRetries }) with runAt and priority changes them all', async () => {
    const id = await publish(', max_retries => 1');
    expect(await runAndFail(id)).toBe('waiting');
    const runAt = new Date('2031-01-01T00:00:00Z');
    expect(await queue.reschedule([id], { maxRetries: 5, priority: 3, runAt })).toBe(1);
    expect(await one(`select attempt, max_retries, priority, scheduled_at = $2 as moved from jobs.job_queue where job_id = $1`,
      [id, runAt])).toEqual({ attempt: 1, max_retries: 5, priority: 3, moved: true });
    await sql(`update jobs.job_queue set scheduled_at = now() where job_id = $1`, [id]);
    expect(await runAndFail(id)).toBe('waiting'); // attempt 2 of 6, where max_retries 1 would have ended it
  });
});

describe('bad values', () => {
  it('are refused by SQL naming the field, and nothing changes', async () => {
    const id = await publish(', max_retries => 2');
    expect(await runAndFail(id)).toBe('waiting'); // attempt 1
    for (const [call, code, column, message] of [
      [`max_retries => -1`, 'PD003', 'max_retries', /must be between 0 and 1000, got -1/],
      [`max_retries => 1001`, 'PD003', 'max_retries', /must be between 0 and 1000, got 1001/],
      [`attempt => -1`, 'PD007', 'attempt', /must be 0 to 1000 .*got -1/],
      [`attempt => 3, max_retries => 2`, 'PD007', 'attempt', /must be 0 to 2 .*got 3/],
      // Against the job's own max_retries (2), or its attempts spent (1).
      [`attempt => 3`, 'PD007', 'attempt', new RegExp(`must be at most the max_retries of job ${id} \\(2\\), got 3: give max_retries too to raise it$`)],
      [`max_retries => 0`, 'PD003', 'max_retries', new RegExp(`must be at least the attempts job ${id} has spent \\(1\\), got 0: give attempt too to reset them$`)],
      [`run_at => null`, 'PD007', 'run_at', /give run_at, priority, max_retries or attempt/],
    ] as const) {
      const e = await sqlErrorOf(sql, `select jobs.reschedule(array[${id}::bigint], ${call})`);
      expect({ call, code: e.code, column: e.column }).toEqual({ call, code, column });
      expect(e.message).toMatch(message);
    }
    expect(await one(`select attempt, max_retries, priority from jobs.job_queue where job_id = $1`, [id]))
      .toEqual({ attempt: 1, max_retries: 2, priority: 0 });
    // Both together are fine: attempts down to 0 with max_retries 0 leaves one run.
    expect(await one(`select jobs.reschedule(array[${id}::bigint], max_retries => 0, attempt => 0) as n`)).toEqual({ n: 1 });
    expect(await runAndFail(id)).toBe('failure');
  });

  it('reschedule still refuses a run_at at or past the expiry, with max_retries and attempt given', async () => {
    const id = await publish(`, expires_at => now() + interval '1 hour'`);
    const e = await sqlErrorOf(sql, `select jobs.reschedule(array[${id}::bigint], now() + interval '2 hours', attempt => 0, max_retries => 9)`);
    expect({ code: e.code, column: e.column }).toEqual({ code: 'PD007', column: 'run_at' });
    expect(await row(id)).toEqual({ attempt: 0, max_retries: 3 });
  });

  it('are refused by queue.reschedule naming options.maxRetries / options.attempts before any round trip', async () => {
    const id = await publish();
    for (const [options, field, rule] of [
      [{ maxRetries: -1 }, 'options.maxRetries', /must be 0 or more/],
      [{ maxRetries: 1001 }, 'options.maxRetries', /must be at most 1000/],
      [{ maxRetries: 1.5 }, 'options.maxRetries', /integer/],
      [{ attempts: -1 }, 'options.attempts', /must be 0 or more/],
      [{ attempts: 2, maxRetries: 1 }, 'options.attempts', /must be at most maxRetries \(1\), got 2/],
      [{}, 'options', /give runAt, delaySeconds, priority, maxRetries or attempts/],
      [{ maxRetries: undefined }, 'options', /give runAt, delaySeconds, priority, maxRetries or attempts/],
    ] as const) {
      const e = await errorOf(queue.reschedule([id], options));
      expect({ options, field: e.field }).toEqual({ options, field });
      expect(e.message).toMatch(rule);
    }
    // The job's own max_retries (3), from the database: named as the option given, the SQL name on the cause.
    const e = await errorOf(queue.reschedule([id], { attempts: 4 }));
    expect(e).toBeInstanceOf(ValidationError);
    expect([e.field, (e.cause as { column?: string }).column]).toEqual(['options.attempts', 'attempt']);
    // Its hint names the option to give as the caller writes it, not the SQL argument.
    expect(e.message).toMatch(new RegExp(`^options.attempts: must be at most the max_retries of job ${id} \\(3\\), got 4: ` +
                                         'give maxRetries too to raise it$'));
    expect(await runAndFail(id)).toBe('waiting'); // attempt 1
    const under = await errorOf(queue.reschedule([id], { maxRetries: 0 }));
    expect([under.field, under.message]).toEqual(['options.maxRetries',
      `options.maxRetries: must be at least the attempts job ${id} has spent (1), got 0: give attempts too to reset them`]);
  });

  it('pgdrain reschedule --max-retries/--attempts: changes them; bad ones are usage errors naming the flag', async () => {
    const id = await publish(', max_retries => 1');
    expect(await runAndFail(id)).toBe('waiting');
    expect(await runCli(db.url, 'reschedule', id, '--max-retries', '4', '--attempts', '0')).toMatchObject({ code: 0, stdout: '1\n' });
    expect(await row(id)).toEqual({ attempt: 0, max_retries: 4 });
    for (const [args, message] of [
      [['--max-retries', '-1'], /--max-retries.*must be an integer from 0 to 1000/],
      [['--max-retries', '1001'], /--max-retries.*must be an integer from 0 to 1000/],
      [['--attempts', 'x'], /--attempts.*must be an integer from 0 to 1000/],
      [['--attempts', '3', '--max-retries', '2'], /--attempts: must be at most --max-retries \(2\), got 3/],
      [[], /^pgdrain: reschedule: give --at, --delay, --priority, --max-retries or --attempts$/m],
      // Checked by the database against the job's own max_retries (4): named as the flag.
      [['--attempts', '5'], /^pgdrain: --attempts: must be at most the max_retries of job \d+ \(4\), got 5: give --max-retries too to raise it$/m],
    ] as const) {
      const r = await runCli(db.url, 'reschedule', id, ...args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
    expect(await row(id)).toEqual({ attempt: 0, max_retries: 4 });
    expect(await runAndFail(id)).toBe('waiting'); // attempt 1
    const under = await runCli(db.url, 'reschedule', id, '--max-retries', '0');
    expect(under.code).toBe(2);
    expect(under.stderr).toMatch(/^pgdrain: --max-retries: must be at least the attempts job \d+ has spent \(1\), got 0: give --attempts too to reset them$/m);
  });
});

it('running jobs are left alone and not counted; waiting ones among them change', async () => {
  const running = await publish(', max_retries => 2');
  await sql(`select * from jobs.consume(1)`);
  const waiting = await publish(', max_retries => 2');
  expect(await one(`select jobs.reschedule($1::bigint[], max_retries => 7, attempt => 0) as n`, [[running, waiting]]))
    .toEqual({ n: 1 });
  expect(await row(running)).toEqual({ attempt: 1, max_retries: 2 });
  expect(await row(waiting)).toEqual({ attempt: 0, max_retries: 7 });
  // A running job's attempt is not checked against the new max_retries (it is not changed).
  expect(await one(`select jobs.reschedule($1::bigint[], max_retries => 0) as n`, [[running]])).toEqual({ n: 0 });
  expect(await row(running)).toEqual({ attempt: 1, max_retries: 2 });
});
