import type { Sql } from './small-lock-table.js';

/**
 * Every row of `tables` (each with the column its rows are ordered by), as
 * one text: taken before and after a call that must write nothing (a refused
 * one), the two are equal.
 */
export async function tableState(sql: Sql, tables: readonly (readonly [table: string, orderBy: string])[]): Promise<string> {
  const parts = tables.map(([table, orderBy]) => `(select string_agg(t::text, ',' order by t.${orderBy}) from ${table} t)`);
  const [row] = await sql<{ s: string }>(`select concat_ws('|', ${parts.join(', ')}) as s`);
  return row!.s;
}
