// A database (or role) whose default_transaction_isolation is REPEATABLE READ
// or SERIALIZABLE runs every drain's claim and jobs.maintain in it, the TS
// drain's (one statement, its own transaction) and pg_cron's alike. Such a
// claim published no tick at all: every drain-run schedule stopped, silently.
// It publishes those no other call changed since its snapshot. Real PostgreSQL.
import { beforeEach, expect, it } from 'vitest';
import { createQueue, defineTask } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { testDb } from './support/db.js';

const db = await testDb();

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.recurring, jobs.tick_miss');
  await db.sql(`select jobs.schedule('a', '* * * * *', 'tick', timeout => 5, runner => 'drains', now => now() - interval '10 minutes')`);
});

async function withDefault<T>(level: string, run: () => Promise<T>): Promise<T> {
  await db.sql(`alter database "${db.name}" set default_transaction_isolation = '${level}'`);
  try {
    return await run();
  } finally {
    await db.sql(`alter database "${db.name}" reset default_transaction_isolation`);
  }
}

for (const level of ['repeatable read', 'serializable']) {
  it(`a drain() on a database whose default is ${level} publishes a due tick and runs it`, async () => {
    const report = await withDefault(level, async () => {
      const driver = pgDriver(db.url, { max: 2 });
      try {
        const tick = defineTask('tick', async () => {});
        return await createQueue({ driver, tasks: { tick } }).drain(10, Date.now() + 10_000);
      } finally {
        await driver.close();
      }
    });
    // Unfixed: claimed 0 (no tick published), the schedule still due.
    expect(report).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(await db.sql(`select next_run_at > now() as moved from jobs.recurring`)).toEqual([{ moved: true }]);
  });

  it(`jobs.maintain() on a database whose default is ${level} publishes a due tick`, async () => {
    const driver = pgDriver(db.url, { max: 1 });
    try {
      const [row] = await withDefault(level, async () => (await driver.query<{ ticks: string; iso: string }>(
        `select jobs.maintain()->>'ticks' as ticks, current_setting('transaction_isolation') as iso`)).rows);
      // Unfixed: 0.
      expect(row).toEqual({ ticks: '1', iso: level });
    } finally {
      await driver.close();
    }
  });
  it(`jobs.drain_sql (pg_cron's drain) on a database whose default is ${level} publishes a due tick`, async () => {
    const driver = pgDriver(db.url, { max: 1 });
    try {
      await withDefault(level, () => driver.query(`call jobs.drain_sql(1, 5)`));
      // Unfixed: false (the schedule still due).
      expect(await db.sql(`select next_run_at > now() as moved from jobs.recurring`)).toEqual([{ moved: true }]);
    } finally {
      await driver.close();
    }
  });
}
