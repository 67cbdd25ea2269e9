// close() of the job events while a LISTEN session lost as it opened waits
// for its next try (RECONNECT_MS, src/db/pg-events.ts open()): the wait ends
// at once, so a pending waitFor or subscribe rejects as close() makes any
// pending call reject ("these job events are closed"), and no timer is left.
// Unfixed, it settled only when the 1 s wait ran out. No time is measured:
// the call must have settled within a few event-loop turns of close(),
// far less than the wait. The window is held open as in
// events-opening.test.ts: a proxy keeps the first LISTEN from reaching the
// server (a slow network); the termination is real.
import { expect, it } from 'vitest';
import { PgJobEvents } from '../src/db/pg-events.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { listenHoldingProxy } from './support/listen-holding-proxy.js';

const db = await testDb();

const eventsBackends = async () => (await db.sql<{ pid: number }>(
  `select pid from pg_stat_activity where datname = current_database() and application_name = 'pgdrain-events'`));

/** A few turns of the event loop: far less than open()'s 1 s between tries. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

it.each(['waitFor', 'subscribe'] as const)(
  'close() while open() waits to try again: a pending %s rejects at once, and no second session opens', async (call) => {
    const proxy = await listenHoldingProxy(db.url);
    const events = new PgJobEvents(proxy.url);
    const [{ id }] = await db.sql<{ id: string }>(`select jobs.publish('t', '{}'::jsonb)::text as id`) as [{ id: string }];
    let settled = false;
    let outcome: unknown;
    const pending = call === 'waitFor' ? events.waitFor(id, { timeoutMs: 60_000 }) : events.subscribe(() => {});
    void pending.then((v) => v, (e: unknown) => e).then((v) => {
      outcome = v;
      settled = true;
    });
    await until(async () => proxy.held(), 'the LISTEN to be held');
    const [backend] = await eventsBackends();
    await db.sql('select pg_terminate_backend($1)', [backend!.pid]);
    // The first session is gone at both ends: open() now waits RECONNECT_MS before its next try.
    await until(async () => proxy.closed() === 1 && (await eventsBackends()).length === 0, 'the first session to end');
    expect(settled).toBe(false);

    await events.close();
    await turns(5);
    // Unfixed: still pending here, and rejected about a second later.
    expect(settled).toBe(true);
    expect(outcome).toMatchObject({ code: 'invalid_argument', message: 'these job events are closed' });
    // close() came during the wait (not after a second try started), and none started since.
    expect(proxy.connections()).toBe(1);
  });
