import { ValidationError } from './errors.js';

// The database argument, checked at the edge: JavaScript callers pass what
// TypeScript would have refused, which otherwise failed deep inside.

/**
 * Throws unless driver is a Driver: a pg pool or client has query() but
 * neither transaction() nor close(), and takes the drain's per-statement
 * options for a callback.
 */
export function checkDriver(driver: unknown): void {
  checkQueryable(driver, 'driver');
  const d = driver as { transaction?: unknown; close?: unknown };
  if (typeof d.transaction !== 'function' || typeof d.close !== 'function') {
    throw new ValidationError('driver', 'must be a pgdrain driver (with transaction() and close()): '
      + 'wrap a pg pool or client as pgDriver(pool), or pass connectionString');
  }
}

/**
 * Throws unless db can run statements (a Driver, a pg client or pool, a
 * transaction): JavaScript callers may pass an un-awaited pgliteDriver(dir)
 * or the queue itself, which failed later as "db.query is not a function".
 */
export function checkQueryable(db: unknown, field: string): void {
  if (typeof (db as { query?: unknown } | null)?.query === 'function') return;
  const what = typeof (db as { then?: unknown } | null)?.then === 'function' ? 'a Promise: await it first'
    : typeof (db as { driver?: { query?: unknown } } | null)?.driver?.query === 'function' ? 'a queue: pass queue.driver'
    : `got ${db === null ? 'null' : typeof db}`;
  throw new ValidationError(field, `must be a driver or client with a query() method (pgDriver(url), await pgliteDriver(dir), a pg client): ${what}`);
}
