// The driver contract on node-postgres (pgDriver), the reference driver.
import { pgDriver } from '../../src/db/pg.js';
import { emptyDb, testDb } from '../support/db.js';
import { freePort } from '../support/postgres.js';
import { driverContract } from './contract.js';

const db = await testDb();
const empty = await emptyDb();
const closedPort = await freePort();

driverContract('pg', { sessions: true, network: true }, async () => ({
  driver: pgDriver(db.url),
  emptyDatabase: async () => pgDriver(empty.url),
  unreachable: () => pgDriver(`postgres://postgres@127.0.0.1:${closedPort}/nowhere`),
}));
