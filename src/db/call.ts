import { translateError } from '../errors.js';
import type { Queryable } from './driver.js';

/**
 * Runs one statement that answers a single value as column `r` (a call of a
 * jobs.* function) and returns it; database errors pgdrain knows become
 * PgDrainErrors.
 */
export async function callValue<R>(db: Queryable, text: string, params: unknown[]): Promise<R> {
  try {
    const { rows } = await db.query<{ r: R }>(text, params);
    return rows[0]!.r;
  } catch (error) {
    throw translateError(error);
  }
}
