// The driver contract on node-postgres (pgDriver), the reference driver.
import pg from 'pg';
import { describe, expect, it, vi } from 'vitest';
import { REFUSED_HOLD_MS } from '../../src/db/pg-pool.js';
import { pgDriver } from '../../src/db/pg.js';
import { translateError, ValidationError, type Driver } from '../../src/index.js';
import { emptyDb, testDb } from '../support/db.js';
import { freePort } from '../support/postgres.js';
import { until } from '../support/drain-process.js';
import { silentServer, tcpProxy } from '../support/tcp-proxy.js';
import { driverContract } from './contract.js';

const db = await testDb();
const empty = await emptyDb();
const closedPort = await freePort();
const target = new URL(db.url);

driverContract('pg', { sessions: true, network: true }, async () => ({
  driver: pgDriver(db.url),
  emptyDatabase: async () => pgDriver(empty.url),
  unreachable: () => pgDriver(`postgres://postgres@127.0.0.1:${closedPort}/nowhere`),
  freezable: async () => {
    const proxy = await tcpProxy(target.hostname, Number(target.port));
    const url = new URL(db.url);
    url.port = String(proxy.port);
    return { driver: pgDriver(url.href), freeze: () => proxy.freeze(), close: () => proxy.close() };
  },
  as: (role) => {
    const url = new URL(db.url);
    url.username = role;
    return pgDriver(url.href);
  },
}));

describe('pgDriver warm()', () => {
  it('a query or a second warm() sent while warm() is still connecting uses that connection, not a second', async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 5 });
    try {
      const driver = pgDriver(pool);
      const warming = driver.warm!();
      const again = driver.warm!();
      const { rows } = await driver.query<{ one: number }>('select 1 as one');
      await Promise.all([warming, again]);
      expect(rows).toEqual([{ one: 1 }]);
      expect(pool.totalCount).toBe(1);
    } finally {
      await pool.end();
    }
  });

  it('close() ends a connection the server never answers instead of waiting for it', async () => {
    // node-postgres's pool.end() waits for every client it is still opening.
    const silent = await silentServer();
    try {
      const driver = pgDriver(silent.url);
      const warming = driver.warm!().then(() => 'connected', () => 'failed');
      await driver.close();
      expect(await warming).toBe('failed');
    } finally {
      await silent.close();
    }
  });
});

describe('pgDriver close() with statements waiting for a connection', () => {
  it('fails them as database_unavailable instead of leaving them pending for ever', async () => {
    const driver = pgDriver(db.url, { max: 1 });
    const busy = driver.query(`select pg_sleep(0.5), 'busy-one'`).then(() => 'done', (e: unknown) => e);
    await until(async () => (await db.sql(`select 1 from pg_stat_activity where query like '%busy-one%' and pid <> pg_backend_pid()`)).length > 0,
      'the first statement to run');
    const waiting = driver.query('select 1').then(() => 'answered', (e: unknown) => e);
    const waitingTx = driver.transaction(async (tx) => tx.query('select 1')).then(() => 'answered', (e: unknown) => e);
    await driver.close();
    expect(await waiting).toMatchObject({ code: 'database_unavailable', message: expect.stringMatching(/closed before this statement got a connection/) });
    expect(await waitingTx).toMatchObject({ code: 'database_unavailable' });
    await busy; // done, or ended by close() had it outlasted CLOSE_WAIT_MS
  });
});

describe('pgDriver and libpq\'s connect_timeout URL parameter', () => {
  it('gives up connecting to a server that never answers after connect_timeout seconds', async () => {
    // node-postgres ignores connect_timeout: without it this connection would wait forever.
    const silent = await silentServer();
    const driver = pgDriver(`${silent.url}?connect_timeout=2`);
    try {
      const error = await driver.query('select 1').then(() => 'answered', (e: unknown) => e);
      expect(translateError(error)).toMatchObject({ code: 'database_unavailable', message: 'database unavailable: timeout expired' });
    } finally {
      await driver.close();
      await silent.close();
    }
  });

  it('a value that is not whole seconds is refused, naming connect_timeout', () => {
    for (const value of ['ten', '1.5', '']) {
      expect(() => pgDriver(`${db.url}?connect_timeout=${value}`), value)
        .toThrow(new ValidationError('connect_timeout', `must be a whole number of seconds, got ${JSON.stringify(value)}`));
    }
    expect(() => pgDriver(`${db.url}?connect_timeout=0`)).not.toThrow(); // libpq: no limit
  });
});

describe('pgDriver on a server that refuses it one more connection', () => {
  it(`keeps to the connections it has for ${REFUSED_HOLD_MS} ms, then opens more again`, async () => {
    const role = `pgdrain_hold_${Math.random().toString(36).slice(2, 10)}`;
    await db.sql(`create role ${role} login connection limit 1`);
    const url = new URL(db.url);
    url.username = role;
    const pool = new pg.Pool({ connectionString: url.href, max: 5 });
    const driver = pgDriver(pool);
    const twelveAtOnce = () => Promise.all(Array.from({ length: 12 }, () => driver.query('select pg_sleep(0.05)')));
    try {
      await driver.query('select 1'); // the role's one connection, before a burst races for it
      await twelveAtOnce();
      expect(pool.options.max).toBe(1);
      await db.sql(`alter role ${role} connection limit -1`);
      await new Promise((resolve) => setTimeout(resolve, REFUSED_HOLD_MS + 100));
      expect(pool.options.max).toBe(5);
      await twelveAtOnce();
      expect(pool.totalCount).toBe(5);
    } finally {
      await pool.end();
      await db.sql(`drop role ${role}`);
    }
  });
});

describe('pgDriver on a pool two drivers share', () => {
  it('a refusal while another driver has lowered the pool gives back the pool\'s own max, not the lowered one', async () => {
    const role = `pgdrain_two_${Math.random().toString(36).slice(2, 10)}`;
    await db.sql(`create role ${role} login connection limit 2`);
    const url = new URL(db.url);
    url.username = role;
    const pool = new pg.Pool({ connectionString: url.href, max: 5 });
    pool.on('error', () => {}); // the backend ended below
    const [a, b] = [pgDriver(pool), pgDriver(pool)];
    const holder = new pg.Client({ connectionString: url.href });
    holder.on('error', () => {});
    const sleepers = (driver: Driver, n: number) => Promise.all(Array.from({ length: n }, () => driver.query('select pg_sleep(0.1)')));
    try {
      // The role's two connections first: PostgreSQL may refuse every one of a burst racing for its last slots.
      await sleepers(a, 2);
      await sleepers(a, 4); // a: refused, max lowered to 2
      expect(pool.options.max).toBe(2);
      // One of the pool's two connections ends, and someone else takes its slot:
      await db.sql(`select pg_terminate_backend(pid) from pg_stat_activity where usename = $1 and pid = (
                      select max(pid) from pg_stat_activity where usename = $1)`, [role]);
      await vi.waitFor(() => expect(pool.totalCount).toBe(1));
      await holder.connect();
      // b opens a second connection (the pool's max is 2) and is refused in turn.
      await sleepers(b, 2);
      expect(pool.options.max).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, REFUSED_HOLD_MS + 100));
      expect(pool.options.max).toBe(5);
    } finally {
      await holder.end().catch(() => {});
      await pool.end();
      await db.sql(`drop role ${role}`);
    }
  });
});
