// A drains-run tick whose publish failed (its bounded queue full) is retried
// a minute on (sql/0023), and the job that retry publishes is the failed
// tick's: scheduled at it, attributes.tick and last_run_at naming it, as
// docs/scheduling.md says (the tick a drain published it for; ticks missed
// together: the first of them). Before, it was the retry's minute (01:01 for
// '0 * * * *'), a time the expression never fires at. Ticks driven with `now`.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
  await sql(`delete from jobs.queue where name = 'small'`);
  await sql(`select jobs.create_queue('small', max_size => 1)`);
});

const filler = async () => (await sql<{ id: string }>(`select jobs.publish('app.job', queue => 'small')::text as id`))[0]!.id;
const tickJobs = () => sql(`select scheduled_at, attributes from jobs.job_queue where task = 'tick.s'`);
const row = async () => (await sql(`select next_run_at, last_run_at, last_error is null as ok from jobs.recurring where name = 's'`))[0];

describe('a tick retried after its queue was full', () => {
  it('publishes the failed tick (scheduled_at, attributes.tick, last_run_at), however many retries failed before', async () => {
    const id = await filler();
    await sql(`select jobs.schedule('s', '0 * * * *', 'tick.s', queue => 'small', runner => 'drains', now => '2030-01-01Z')`);
    await sql(`select jobs.publish_due_schedules('2030-01-01T01:00:30Z')`);
    await sql(`select jobs.publish_due_schedules('2030-01-01T01:01:30Z')`);  // the retry fails too
    expect(await row()).toEqual({ next_run_at: new Date('2030-01-01T01:02:00Z'), last_run_at: null, ok: false });
    await sql(`select jobs.cancel($1)`, [id]);
    expect(await sql(`select jobs.publish_due_schedules('2030-01-01T01:05:00Z') as n`)).toEqual([{ n: 1 }]);
    expect(await tickJobs()).toEqual([{ scheduled_at: new Date('2030-01-01T01:00:00Z'),
                                        attributes: { schedule: 's', tick: '2030-01-01T01:00:00.000Z' } }]);
    expect(await row()).toEqual({ next_run_at: new Date('2030-01-01T02:00:00Z'),
                                  last_run_at: new Date('2030-01-01T01:00:00Z'), ok: true });
    // The next tick is its own again (the queue emptied for it).
    await sql(`truncate jobs.job_queue, jobs.job`);
    await sql(`select jobs.publish_due_schedules('2030-01-01T02:00:10Z')`);
    expect((await tickJobs()).map((j) => (j.attributes as { tick: string }).tick)).toEqual(['2030-01-01T02:00:00.000Z']);
  });

  it('jobs.schedule keeps the failed tick for a retry unless it changes the expression', async () => {
    const id = await filler();
    const again = (cron: string, now: string) =>
      sql(`select jobs.schedule('s', $1, 'tick.s', body => '{"n":2}', queue => 'small', runner => 'drains', now => $2)`, [cron, now]);
    await sql(`select jobs.schedule('s', '0 * * * *', 'tick.s', queue => 'small', runner => 'drains', now => '2030-01-01Z')`);
    await sql(`select jobs.publish_due_schedules('2030-01-01T01:00:30Z')`);
    await again('0 * * * *', '2030-01-01T01:00:40Z');  // another body: the retry still publishes the 01:00 tick
    await sql(`select jobs.cancel($1)`, [id]);
    await sql(`select jobs.publish_due_schedules('2030-01-01T01:01:00Z')`);
    expect((await tickJobs()).map((j) => j.scheduled_at)).toEqual([new Date('2030-01-01T01:00:00Z')]);

    // A new expression whose due tick fails: dropped with the old one's, never published as its tick.
    await sql(`truncate jobs.job_queue, jobs.job`);
    await filler();
    await sql(`select jobs.publish_due_schedules('2030-01-01T02:00:30Z')`);
    await again('30 * * * *', '2030-01-01T02:00:40Z');
    await sql(`truncate jobs.job_queue, jobs.job`);
    await sql(`select jobs.publish_due_schedules('2030-01-01T02:30:10Z')`);
    expect(await tickJobs()).toEqual([{ scheduled_at: new Date('2030-01-01T02:30:00Z'),
                                        attributes: { schedule: 's', tick: '2030-01-01T02:30:00.000Z' } }]);
  });

  it('with backfill added while it waits for its retry, the backfill starts at the failed tick, not at the retry minute', async () => {
    const id = await filler();
    await sql(`select jobs.schedule('s', '0 * * * *', 'tick.s', queue => 'small', runner => 'drains', now => '2030-01-01Z')`);
    await sql(`select jobs.publish_due_schedules('2030-01-01T01:00:30Z')`);
    await sql(`select jobs.schedule('s', '0 * * * *', 'tick.s', queue => 'small', runner => 'drains', backfill => 86400,
               now => '2030-01-01T01:00:40Z')`);
    await sql(`select jobs.cancel($1)`, [id]);
    await sql(`update jobs.queue set max_size = null where name = 'small'`);
    await sql(`select jobs.publish_due_schedules('2030-01-01T02:05:00Z')`);
    // Before: 01:01 (no tick of the expression) and 02:00, the 01:00 tick lost.
    expect((await tickJobs()).map((j) => (j.attributes as { tick: string }).tick).sort())
      .toEqual(['2030-01-01T01:00:00.000Z', '2030-01-01T02:00:00.000Z']);
  });
});
