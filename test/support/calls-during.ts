// Work counted, not timed: PL/pgSQL function calls during one statement.
import pg from 'pg';

/**
 * Runs statement (with params), on the database at url, in a transaction of its own that counts calls
 * of PL/pgSQL functions (track_functions), and answers its first row (or the
 * error it failed with, its writes undone) and how many times jobs.<funcname>
 * returned in it. Under a statement_timeout of 5 s, which only work without
 * bounds reaches (a century of a rule's days: seconds).
 */
export async function callsDuring<R>(url: string, statement: string, params: unknown[], funcname: string):
    Promise<{ row: R | undefined; calls: number; error?: pg.DatabaseError }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('begin');
    await client.query(`set local track_functions = 'pl'`);
    await client.query(`set local statement_timeout = '5s'`);
    await client.query('savepoint s');
    let row: R | undefined;
    let error: pg.DatabaseError | undefined;
    try {
      ({ rows: [row] } = await client.query<R & object>(statement, params));
    } catch (e) {
      error = e as pg.DatabaseError;
      await client.query('rollback to savepoint s');
    }
    const { rows } = await client.query<{ calls: string }>(
      `select coalesce(sum(calls), 0) as calls from pg_stat_xact_user_functions where schemaname = 'jobs' and funcname = $1`,
      [funcname]);
    await client.query('commit');
    return { row, calls: Number(rows[0]!.calls), ...(error ? { error } : {}) };
  } finally {
    await client.end();
  }
}
