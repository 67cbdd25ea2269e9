// What the tick-budget tests share: rules whose search costs a known number
// of steps (no minute ever fires, odd minutes on a 2-minute step, so a search
// walks about 20 steps a day until its next RDATE), and a measure of one
// search's steps, so each test can check its premise rather than assume it.
import pg from 'pg';

const odd = `FREQ=MINUTELY;INTERVAL=2;BYMINUTE=${Array.from({ length: 30 }, (_, i) => 2 * i + 1).join(',')}`;

/** An RRULE that fires only at these RDATEs (iCalendar UTC form, 20300105T000000Z). */
export const rule = (...rdates: string[]) => `${odd}\nRDATE:${rdates.join(',')}`;

/** The claims' time in these tests, and a backfill of 366 days: the window from 2029-12-31T00:00:30. */
export const NOW = '2031-01-01T00:00:30Z';
export const YEAR = 31622400;

/** The steps one search for the tick after `after` (on tz's clock) takes, a whole budget given (50000: out of it, PDC01). */
export async function steps(url: string, cron: string, after: string, tz: string | null = null): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('begin');
    await client.query('select jobs.tick_steps_give(jobs.max_tick_steps())');
    try {
      await client.query('select jobs.cron_tick($1, $2, $3)', [cron, after, tz]);
    } catch (error) {
      if ((error as { code?: string }).code === 'PDC01') return 50000;
      throw error;
    }
    const { rows } = await client.query(`select 50000 - (regexp_match(current_setting('pgdrain.tick_steps'), '^[0-9]+'))[1]::int as n`);
    return rows[0].n as number;
  } finally {
    await client.end();
  }
}

type Sql = <T>(text: string, params?: unknown[]) => Promise<T[]>;

/** A schedule's tick state: its next and last run, its last error, the ticks it skipped. */
export const scheduleRow = async (sql: Sql, name: string) => (await sql<{ next_run_at: Date | null; last_run_at: Date | null;
                                                                          last_error: string | null; skipped_ticks: number }>(
  `select next_run_at, last_run_at, last_error, skipped_ticks::int as skipped_ticks from jobs.recurring where name = $1`, [name]))[0]!;

/** The scheduled times of a task's queued jobs, in order, as ISO text. */
export const tickTimes = async (sql: Sql, task: string) => (await sql<{ at: Date }>(
  `select scheduled_at as at from jobs.job_queue where task = $1 order by scheduled_at`, [task])).map((j) => j.at.toISOString());
