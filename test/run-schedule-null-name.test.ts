// jobs.run_schedule (sql/0048, what pg_cron calls) given a null name: PDC02
// naming name and saying it got null. Before: 'name: no schedule named '
// (format's %s of a null quote_literal is empty), the value not said.
import { expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();

it('refuses a null name, saying so, and an unknown one by name', async () => {
  const none = await sqlErrorOf(db.sql, 'select jobs.run_schedule(null)');
  expect([none.code, none.column, none.message]).toEqual(['PDC02', 'name', "name: must be a schedule's name, got null"]);
  const gone = await sqlErrorOf(db.sql, `select jobs.run_schedule('gone')`);
  expect([gone.code, gone.column, gone.message]).toEqual(['PDC02', 'name', "name: no schedule named 'gone'"]);
});
