// A drain that released a job unstarted (slot-wait.ts starve) claims no more
// jobs than its pool has connections free for transactional handlers. Its
// claims cannot choose tasks: a drain whose claims bring plain jobs too (they
// need no connection) must go on running them while a transactional handler
// holds the pool's one connection for handlers, and a starved drain must not
// stay so once a connection came free and its claim took it. On a real PostgreSQL.
import { afterAll, expect, it } from 'vitest';
import { defineTask } from '../src/index.js';
import type { JobEndEvent } from '../src/types.js';
import { until } from './support/drain-process.js';
import { fullPool } from './support/full-pool.js';

let plainRan = 0;
const plain = defineTask('plain', async () => { plainRan++; });
let onQuick: (() => void) | undefined;
const quick = defineTask('quick', async (_body: unknown, ctx) => {
  await ctx.db.query('select 1');
  onQuick?.();
}, { transactional: true });
// Pool of 2: one connection for transactional handlers, one kept for claims and settles.
const { db, driver, releases, queue } = await fullPool({ plain, quick }, { max: 2 });
afterAll(() => driver.close());

const publish = (args: string) => db.sql(`select jobs.publish(${args})`);

it('a drain whose claims bring plain jobs runs them all while a hung transactional handler holds the connection', async () => {
  plainRan = 0;
  await db.sql(`select jobs.create_queue('mixed')`);
  // The hog hangs past its timeout holding the connection; the other transactional job waits for it in vain and is
  // released unstarted; the plain jobs behind them need no connection.
  await publish(`'long', '{}'::jsonb, timeout_seconds => 1, max_retries => 0, priority => 2, queue => 'mixed'`);
  await publish(`'long', '{}'::jsonb, timeout_seconds => 1, max_retries => 0, priority => 1, queue => 'mixed'`);
  for (let i = 0; i < 8; i++) await publish(`'plain', '{}'::jsonb, timeout_seconds => 2, queue => 'mixed'`);
  try {
    const report = await queue.drain(10, Date.now() + 10_000, { queue: 'mixed', concurrency: 3, overrunMs: 2000 });
    // Unfixed: the plain jobs the first claim did not bring wait for a connection until the deadline (ran 1 of 8).
    expect(plainRan).toBe(8);
    expect(report).toMatchObject({ succeeded: 8, failed: 1, stoppedBy: 'deadline' });
    expect(report.releasedUnstarted).toBeGreaterThanOrEqual(1);
  } finally {
    for (const release of releases.splice(0)) release();
  }
});

it('a starved drain whose claim took a connection freed is starved no more: plain jobs run while a handler holds it', async () => {
  plainRan = 0;
  await db.sql(`select jobs.create_queue('again')`);
  await publish(`'long', '{}'::jsonb, timeout_seconds => 20, priority => 1, queue => 'again'`);
  await publish(`'quick', '{}'::jsonb, timeout_seconds => 1, max_retries => 0, queue => 'again'`);
  const stop = new AbortController();
  let quickRan = 0;
  onQuick = () => quickRan++;
  // The quick job released unstarted (the hog holds the connection): the hog returns then, and quick runs.
  const onJobEnd = (e: JobEndEvent) => {
    if (e.outcome === 'release') for (const release of releases.splice(0)) release();
  };
  try {
    const drained = queue.drain(10, Date.now() + 60_000, { queue: 'again', concurrency: 3, overrunMs: 2000, lingerMs: 60_000,
                                                           signal: stop.signal, graceMs: 0, onJobEnd });
    await until(async () => quickRan === 1, 'the released job to run', 20_000);
    // Now a transactional handler holds the connection a while, and plain jobs come.
    await publish(`'long', '{}'::jsonb, timeout_seconds => 30, queue => 'again'`);
    await until(async () => releases.length === 1, 'the second hog to hold the connection', 20_000);
    for (let i = 0; i < 4; i++) await publish(`'plain', '{}'::jsonb, timeout_seconds => 5, queue => 'again'`);
    // Unfixed: starved for the rest of its run, the drain claims nothing while the hog holds the connection.
    await until(async () => plainRan === 4, 'the plain jobs to run', 20_000);
    for (const release of releases.splice(0)) release();
    stop.abort();
    const report = await drained;
    expect(report).toMatchObject({ succeeded: 7, released: 1, releasedUnstarted: 1 });
  } finally {
    onQuick = undefined;
    stop.abort();
    for (const release of releases.splice(0)) release();
  }
});
