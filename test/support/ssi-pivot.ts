// A SERIALIZABLE transaction made the pivot of a dangerous structure, so that
// PostgreSQL's SSI must fail its writes to a table with 40001 "could not
// serialize access due to read/write dependencies among transactions"
// (DETAIL 'Reason code: …'): the transaction's failure, not a changed row's.
import type { LockSession } from './lock-sessions.js';

/**
 * Runs run(app) in a SERIALIZABLE session that read what another transaction, committed first, wrote, while a
 * reader, still open, has read `table` (which run writes) and written elsewhere. Answers run's answer, then commits
 * the reader; the app's transaction is run's to end.
 */
export async function asPivot<T>(session: () => Promise<LockSession>, table: string, run: (app: LockSession) => Promise<T>): Promise<T> {
  const app = await session();
  await app.query('create table if not exists ssi_read (i int); create table if not exists ssi_other (i int); truncate ssi_read, ssi_other');
  await app.query('begin isolation level serializable');
  await app.query('select count(*) from ssi_read');
  const out = await session();  // writes what the app read, commits first
  await out.query('begin isolation level serializable');
  await out.query('insert into ssi_read values (1)');
  await out.query('commit');
  const reader = await session();  // read what run writes, writes elsewhere, still open
  await reader.query('begin isolation level serializable');
  await reader.query(`select count(*) from ${table}`);
  await reader.query('insert into ssi_other values (1)');
  const answer = await run(app);
  await reader.query('commit');
  return answer;
}
