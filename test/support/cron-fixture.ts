// What the real-pg_cron test files (cron, cron-background-workers) set up on
// their database once pg_cron is created: pgdrain's migrations, and an SQL
// task app.note (jobs.allow_sql_task) whose calls leave a row in app.notes.
import { migrate, pgDriver } from '../../src/index.js';

export async function migrateWithNoteTask(url: string, sql: (text: string) => Promise<unknown>): Promise<void> {
  const driver = pgDriver(url);
  try {
    await migrate(driver);
  } finally {
    await driver.close();
  }
  await sql(`create schema app;
    create table app.notes (b jsonb);
    create function app.note(b jsonb) returns jsonb language sql as $$ insert into app.notes values (b) returning jsonb_build_object('noted', b) $$;
    select jobs.allow_sql_task('app.note');`);
}
