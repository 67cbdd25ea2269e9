import type { Sql } from './small-lock-table.js';

/** The n of a `select count(*) as n …` (a bigint, which pg reads as text). */
export const count = async (sql: Sql, text: string, params?: unknown[]) => Number((await sql<{ n: string }>(text, params))[0]!.n);
