// The driver contract on node-postgres (pgDriver), the reference driver.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { pgDriver } from '../../src/db/pg.js';
import { emptyDb, testDb } from '../support/db.js';
import { freePort } from '../support/postgres.js';
import { silentServer, tcpProxy } from '../support/tcp-proxy.js';
import { driverContract } from './contract.js';

const db = await testDb();
const empty = await emptyDb();
const closedPort = await freePort();

driverContract('pg', { sessions: true, network: true }, async () => ({
  driver: pgDriver(db.url),
  emptyDatabase: async () => pgDriver(empty.url),
  unreachable: () => pgDriver(`postgres://postgres@127.0.0.1:${closedPort}/nowhere`),
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

  it('close() ends a connection whose statement never gets a reply, once it has waited CLOSE_WAIT_MS', async () => {
    // node-postgres's pool.end() waits for every checked-out client.
    const target = new URL(db.url);
    const proxy = await tcpProxy(target.hostname, Number(target.port));
    try {
      const driver = pgDriver(`postgres://${target.username}@127.0.0.1:${proxy.port}${target.pathname}`);
      // In a transaction, so its client is checked out before the network freezes.
      let sent!: () => void;
      const inFlight = new Promise<void>((resolve) => (sent = resolve));
      const unanswered = driver.transaction(async (tx) => {
        await tx.query('select 1');
        proxy.freeze();
        const reply = tx.query('select 2');
        sent();
        await reply;
      }).then(() => 'committed', () => 'failed');
      await inFlight;
      await driver.close();
      expect(await unanswered).toBe('failed');
    } finally {
      await proxy.close();
    }
  });
});

describe('pgDriver transaction()', () => {
  it('when the server ends its connection, the transaction rejects and the process lives on', async () => {
    // A checked-out pg client emits 'error' with no listener of the pool's: unhandled, it ends the process.
    const driver = pgDriver(db.url);
    try {
      const outcome = await driver.transaction(async (tx) => {
        const { rows } = await tx.query<{ pid: number }>('select pg_backend_pid() as pid');
        await db.sql('select pg_terminate_backend($1)', [rows[0]!.pid]);
        await new Promise((resolve) => setTimeout(resolve, 200)); // the FATAL message and the socket's end arrive
        await tx.query('select 1');
      }).then(() => 'committed', (e: unknown) => e);
      expect(outcome).toBeInstanceOf(Error);
      expect((await driver.query<{ one: number }>('select 1 as one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await driver.close();
    }
  });
});
