// A blank reason (empty or only whitespace) for cancel, fail, cancelByKey and
// a queue's purge is refused, as every other text an admin call takes
// (jobs.blank, sql/0002): it recorded 'failed: ' or 'cancelled: ', saying
// nothing. Refused in SQL (PD021 reason, jobs.check_reason), in TypeScript
// (a ValidationError naming reason), and by the CLI's --reason; nothing is written.
import { beforeEach, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = () => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const publish = async (args = '') => (await sql<{ id: string }>(`select jobs.publish('t'${args})::text as id`))[0]!.id;
/** The jobs as they are: a refused call must leave every one of them waiting. */
const states = async () => sql(`select job_id::text as id, state, error from jobs.all order by job_id`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency; select jobs.create_queue(\'rq\')');
});

it('the SQL functions refuse a blank reason, PD021 naming reason, and write nothing', async () => {
  const id = await publish(`, dedupe_key => 'k'`);
  await publish(`, queue => 'rq'`);
  const before = await states();
  for (const reason of ["''", "' '", "E'\\t\\n'"]) {
    for (const call of [`jobs.fail(array[${id}::bigint], ${reason})`, `jobs.cancel(${id}, ${reason})`,
      `jobs.cancel_bulk(array[${id}::bigint], ${reason})`, `jobs.cancel_key('k', ${reason})`,
      `jobs.cancel_key('no such key', ${reason})`, `jobs.purge_queue('rq', ${reason})`]) {
      expect(await sqlErrorOf(sql, `select ${call}`), call).toMatchObject({ code: 'PD021', column: 'reason',
        message: expect.stringMatching(/^reason: must be a non-empty text, not only whitespace, or null \(the default reason\)/) });
    }
  }
  expect(await states()).toEqual(before);
  // null is the default, as before.
  expect((await sql(`select jobs.fail(array[${id}::bigint], null) as n`))[0]).toEqual({ n: 1 });
  expect((await sql(`select error from jobs.job where job_id = $1`, [id]))[0]).toEqual({ error: 'failed: by request' });
});

it('queue.fail, cancel, cancelByKey and queues.purge refuse a blank reason, a ValidationError naming it', async () => {
  const id = await publish(`, dedupe_key => 'k'`);
  await publish(`, queue => 'rq'`);
  const before = await states();
  const q = queue();
  for (const reason of ['', '  ', '\n']) {
    for (const [call, field] of [
      [() => q.fail([id], reason), 'reason'],
      [() => q.cancel(id, reason), 'reason'],
      [() => q.cancel([id], reason), 'reason'],
      [() => q.cancelByKey('k', reason), 'reason'],
      [() => q.queues.purge('rq', { reason }), 'options.reason'],
    ] as const) {
      await expect(call(), `${field} ${JSON.stringify(reason)}`).rejects.toMatchObject({ name: 'ValidationError', field,
        message: `${field}: must be a non-empty text, not only whitespace, or left out (the default reason)` });
    }
  }
  expect(await states()).toEqual(before);
  expect(await q.fail([id], 'tenant deleted')).toBe(1);
  expect((await sql(`select error from jobs.job where job_id = $1`, [id]))[0]).toEqual({ error: 'failed: tenant deleted' });
});

it('pgdrain fail, cancel and queue purge refuse a blank --reason, exit 2 naming the flag', async () => {
  const id = await publish();
  const before = await states();
  for (const args of [['fail', id], ['cancel', id], ['queue', 'purge', 'rq']]) {
    const r = await runCli(db.url, ...args, '--reason', ' ');
    expect(r, args.join(' ')).toMatchObject({ code: 2, stdout: '' });
    expect(r.stderr, args.join(' ')).toContain("pgdrain: --reason: must be a non-empty text, "
      + 'not only whitespace, or left out (the default reason)');
  }
  expect(await states()).toEqual(before);
});
