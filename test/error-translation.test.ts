// translateError's reading of a driver's errors: those that carry no
// SQLSTATE, and the database's own checks of input (class PD).
import { describe, expect, it } from 'vitest';
import { createQueue, getJob, PgDrainError, pgDriver, ValidationError } from '../src/index.js';
import { translateError } from '../src/errors.js';
import { emptyDb, sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });

describe('translateError', () => {
  it("reads node-postgres's broken-client errors as database_unavailable", () => {
    // A user's own pool with an 'error' listener (README): a statement on a client that broke fails so.
    for (const message of ['Client has encountered a connection error and is not queryable', 'Connection terminated unexpectedly']) {
      expect(translateError(new Error(message))).toMatchObject({ code: 'database_unavailable', message: `database unavailable: ${message}` });
    }
  });

  it('reads a database turned away (55000, ALLOW_CONNECTIONS false) as database_unavailable, no other 55000', () => {
    // A drain's claim met it while its settle met a cut connection: drain() rejected with a raw driver error.
    const refused = 'database "app" is not currently accepting connections';
    expect(translateError(Object.assign(new Error(refused), { code: '55000' })))
      .toMatchObject({ code: 'database_unavailable', message: `database unavailable: ${refused}` });
    expect(translateError(Object.assign(new Error('cannot do that now'), { code: '55000' }))).not.toBeInstanceOf(PgDrainError);
  });

  it('reads a PD error as a ValidationError naming the field, but a full queue (PD010) as queue_full', () => {
    const bad = translateError(Object.assign(new Error('expires_at: must be after the job\'s scheduled time'), { code: 'PD007', column: 'expires_at' }));
    expect(bad).toBeInstanceOf(ValidationError);
    expect(bad).toMatchObject({ code: 'invalid_argument', field: 'expires_at', rule: "must be after the job's scheduled time" });
    const full = translateError(Object.assign(new Error("queue: 'mail' is full"), { code: 'PD010', column: 'queue' }));
    expect(full).toBeInstanceOf(PgDrainError);
    expect(full).not.toBeInstanceOf(ValidationError);
    expect(full).toMatchObject({ code: 'queue_full', field: 'queue' });
  });

  it('every PD code the SQL raises for bad input reads as a ValidationError: a group (PD019), progress (PD020)', async () => {
    const group = await sqlErrorOf(db.sql, `select jobs.publish('t', group_tier => 'gold')`);
    const progress = await sqlErrorOf(db.sql, `select jobs.set_progress(1, 1, to_jsonb(repeat('x', 140000)))`);
    for (const [error, code] of [[group, 'PD019'], [progress, 'PD020']] as const) {
      expect(error, code).toMatchObject({ code });
      expect(translateError(error), code).toBeInstanceOf(ValidationError);
    }
  });

  it('the table knows every PD code sql/ raises for callers (the internal PDA9x / PDC9x signals left out)', async () => {
    const { readdir, readFile } = await import('node:fs/promises');
    const dir = new URL('../sql/', import.meta.url);
    const codes = new Set<string>();
    for (const file of (await readdir(dir)).filter((f) => /^\d{4}_.*\.sql$/.test(f))) {
      for (const [, code] of (await readFile(new URL(file, dir), 'utf8')).matchAll(/'(PD[0-9A-Z]{3})'/g)) {
        if (!/^PD[AC]9\d$/.test(code!)) codes.add(code!);
      }
    }
    expect(codes.size).toBeGreaterThan(20);
    for (const code of codes) {
      const read = translateError(Object.assign(new Error('f: bad'), { code }));
      expect(read, code).toBeInstanceOf(PgDrainError);
      expect((read as PgDrainError).code, code).toBe(code === 'PD010' ? 'queue_full' : 'invalid_argument');
    }
  });

  it('bad input only the database can check is a ValidationError named as the caller wrote it: publish, publishBulk, publishEvent', async () => {
    const past = new Date(Date.now() - 60_000);
    const calls: [() => Promise<unknown>, string][] = [
      [() => queue.publish('t', null, { expiresAt: past }), 'options.expiresAt'],
      [() => queue.publish('t', null, { deadLetter: 'no_such_queue' }), 'options.deadLetter'],
      [() => queue.publishBulk([{ task: 't' }, { task: 't', expiresAt: past }]), 'jobs[1].expiresAt'],
      [() => queue.publishEvent('ev', null, { expiresAt: past }), 'options.expiresAt'],
    ];
    for (const [call, field] of calls) {
      const error = await call().then(() => null, (e: unknown) => e);
      expect(error, field).toBeInstanceOf(ValidationError);
      expect(error, field).toMatchObject({ code: 'invalid_argument', field });
    }
  });

  it('getJob passes its database errors through translateError: on an unmigrated database, not_migrated saying to run migrate', async () => {
    const empty = await emptyDb();
    const driver = pgDriver(empty.url);
    const bare = createQueue({ driver: { ...driver, close: async () => {} }, tasks: {} });
    try {
      for (const call of [() => bare.getJob('1'), () => getJob(driver, '1')]) {
        const error = await call().then(() => null, (e: unknown) => e);
        expect(error).toBeInstanceOf(PgDrainError);
        expect(error).toMatchObject({ code: 'not_migrated', message: expect.stringMatching(/run pgdrain migrate$/) });
      }
    } finally {
      await driver.close();
    }
  });
});
