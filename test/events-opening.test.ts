// A LISTEN session terminated while it opens (connected, its LISTEN not yet
// run) for waitFor, subscribe or a lingering drain (listenQueued): opened
// again, as a session lost later is, instead of rejecting as "database
// unavailable" (src/db/pg-events.ts). The window is
// held open by a proxy that keeps the first session's LISTEN from reaching
// the server, standing in for a slow network; the termination is real.
import { createServer } from 'node:net';
import { expect, it } from 'vitest';
import { listenQueued } from '../src/db/pg.js';
import { createQueue, type QueueEvent } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { listenHoldingProxy } from './support/listen-holding-proxy.js';

const db = await testDb();

/** Terminates the one events session once its LISTEN is held back. */
async function terminateHeld(proxy: { held(): boolean }) {
  await until(async () => proxy.held(), 'the LISTEN to be held');
  const pids = await db.sql<{ pid: number }>(
    `select pid from pg_stat_activity where datname = current_database() and application_name = 'pgdrain-events'`);
  expect(pids).toHaveLength(1);
  await db.sql('select pg_terminate_backend($1)', [pids[0]!.pid]);
}

it('waitFor whose LISTEN session is terminated before its LISTEN ran opens another and answers', async () => {
  const proxy = await listenHoldingProxy(db.url);
  const q = createQueue({ connectionString: proxy.url, tasks: {} });
  try {
    const id = await q.publish('t');
    await db.sql('select * from jobs.consume(1)');
    let answered = false;
    const waiting = q.waitFor(id, { timeoutMs: 60_000 }).then((v) => v, (e: unknown) => e).finally(() => (answered = true));
    await terminateHeld(proxy);
    // Unfixed, waitFor rejected here ("database unavailable") without opening another.
    await until(async () => proxy.listens() >= 2 || answered, 'a second session to LISTEN');
    await db.sql('select jobs.ack($1::bigint)', [id]);
    expect(await waiting).toMatchObject({ id, status: 'success' });
  } finally {
    await q.close();
  }
});

it('subscribe whose LISTEN session is terminated before its LISTEN ran opens another and hears events', async () => {
  const proxy = await listenHoldingProxy(db.url);
  const q = createQueue({ connectionString: proxy.url, tasks: {} });
  try {
    const events: QueueEvent[] = [];
    const subscribing = q.subscribe((e) => events.push(e));
    await terminateHeld(proxy);
    // Unfixed, subscribe rejected here ("database unavailable").
    await subscribing;
    expect(proxy.listens()).toBe(2);
    await q.publish('t');
    await until(async () => events.some((e) => e.event === 'queued' && e.queue === 'default'), 'the queued event');
  } finally {
    await q.close();
  }
});

it("a lingering drain's LISTEN (listenQueued) terminated before its LISTEN ran is ready on another", async () => {
  const proxy = await listenHoldingProxy(db.url);
  const heard: string[] = [];
  const listener = listenQueued(proxy.url, (queue) => heard.push(queue));
  try {
    await terminateHeld(proxy);
    // Unfixed, ready rejected and the drain went on polling only.
    await listener.ready;
    await db.sql(`select pg_notify('pgdrain_queued', 'linger')`);
    await until(async () => heard.includes('linger'), 'the NOTIFY');
  } finally {
    await listener.close();
  }
});

it('subscribe to a server that drops every connection unanswered fails with the first, not retried', async () => {
  // Nothing answered, so nothing says a server is there: no second try (this held before the fix too).
  let accepted = 0;
  const server = createServer((socket) => {
    accepted++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(db.url);
  url.host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  const q = createQueue({ connectionString: url.href, tasks: {} });
  try {
    await expect(q.subscribe(() => {})).rejects.toMatchObject({ code: 'database_unavailable' });
    expect(accepted).toBe(1);
  } finally {
    await q.close();
    server.close();
  }
});
