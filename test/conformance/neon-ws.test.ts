// The driver contract on @neondatabase/serverless's Pool (neonDriver): the
// PostgreSQL protocol over a WebSocket, through a local ws→TCP proxy (what
// Neon's own proxy does) to the test PostgreSQL.
import { afterAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { neonDriver } from '../../src/db/neon.js';
import { ValidationError } from '../../src/index.js';
import { emptyDb, testDb } from '../support/db.js';
import { freePort } from '../support/postgres.js';
import { tcpProxy } from '../support/tcp-proxy.js';
import { startWsProxy } from '../support/ws-proxy.js';
import { driverContract } from './contract.js';

const db = await testDb();
const empty = await emptyDb();
const closedPort = await freePort();
const proxy = await startWsProxy();
afterAll(() => proxy.close());
// Node 20 has no global WebSocket: the driver takes the ws package's.
const options = { wsProxy: proxy.url, webSocketConstructor: WebSocket };

driverContract('Neon WebSocket Pool', { sessions: true, network: true }, async () => ({
  driver: neonDriver(db.url, options),
  emptyDatabase: async () => neonDriver(empty.url, options),
  unreachable: () => neonDriver(`postgres://postgres@127.0.0.1:${closedPort}/nowhere`, options),
  // The WebSocket proxy reaches PostgreSQL through a TCP proxy that can stop forwarding.
  freezable: async () => {
    const target = new URL(db.url);
    const frozen = await tcpProxy(target.hostname, Number(target.port));
    const url = new URL(db.url);
    url.hostname = '127.0.0.1';
    url.port = String(frozen.port);
    return { driver: neonDriver(url.href, options), freeze: () => frozen.freeze(), close: () => frozen.close() };
  },
  as: (role) => {
    const url = new URL(db.url);
    url.username = role;
    return neonDriver(url.href, options);
  },
}));

describe('neonDriver', () => {
  it('went through the WebSocket proxy, and closed every connection it opened', async () => {
    expect(proxy.accepted).toBeGreaterThan(0);
    // close() ends the sockets; the proxy hears of it one WebSocket close handshake later.
    await vi.waitFor(() => expect(proxy.open).toBe(0), { timeout: 10_000 });
  });

  it('close() fails the statements still waiting for a connection as database_unavailable, as pgDriver does', async () => {
    const driver = neonDriver(db.url, { ...options, max: 1 });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const holding = driver.transaction(async (tx) => { await tx.query('select 1'); await held; });
    await vi.waitFor(async () => expect((await db.sql(`select 1 from pg_stat_activity where state = 'idle in transaction'
                                                      and datname = current_database()`)).length).toBeGreaterThan(0));
    const waiting = driver.query('select 2').then(() => 'answered', (e: unknown) => e);
    const closing = driver.close();
    release();
    await holding;
    await closing;
    expect(await waiting).toMatchObject({ code: 'database_unavailable' });
  });

  it('rejects bad options naming the field', () => {
    expect(() => neonDriver('mysql://x/y')).toThrow(ValidationError);
    expect(() => neonDriver('mysql://x/y')).toThrow(/^connectionString: must be a postgres:\/\/ URL/);
    expect(() => neonDriver(db.url, { wsProxy: 'http://proxy/v2' })).toThrow(/^wsProxy: must be a ws:\/\/ or wss:\/\/ URL/);
    expect(() => neonDriver(db.url, { max: 0 })).toThrow(/^max: must be an integer of at least 1/);
  });
});
