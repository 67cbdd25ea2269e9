// Queues under steady load, for the soaks and the steady rounds: producers
// add 1,000 jobs per statement, consumers take them back to back. pgdrain
// runs four drain(500) calls back to back, as a cron or a fleet of
// short-lived functions would, each for up to 10 s; the floor's four loops
// claim 500 and delete them (floor) or move them to a history table
// (floor+history); graphile-worker runs one runner tuned as in the
// throughput rounds (graphile-worker-2: two).
import { makeWorkerUtils, run } from 'graphile-worker';
import pg from 'pg';
import { createQueue } from '../src/index.js';
import { CLAIM, DELETE, INSERT, MOVE, SCHEMA } from './systems/floor.js';
import { silent, tunedRunner } from './systems/graphile.js';
import { BATCH, DRAINERS } from './systems/system.js';

export const LOADS = ['pgdrain', 'floor', 'floor+history', 'graphile-worker', 'graphile-worker-2'] as const;
export type LoadName = (typeof LOADS)[number];

/**
 * One queue under steady load. publish adds 1,000 jobs; start runs consumers
 * that call done(n) as n jobs end, until pause (which returns once they
 * stopped; start may follow again); close ends the queue's connections.
 */
export interface Load {
  publish(from: number): Promise<void>;
  start(done: (n: number) => void): Promise<void>;
  pause(): Promise<void>;
  close(): Promise<void>;
}

/** Consumer loops that stop at pause: each calls step() until it is asked to stop. */
function loops(step: () => Promise<void>): Pick<Load, 'pause'> & { start(): void } {
  let running: Promise<void>[] = [];
  let stopping = false;
  return {
    start() {
      stopping = false;
      running = Array.from({ length: DRAINERS }, async () => {
        while (!stopping) await step();
      });
    },
    async pause() {
      stopping = true;
      await Promise.all(running);
      running = [];
    },
  };
}

async function pgdrainLoad(url: string): Promise<Load> {
  let done = (_n: number) => {};
  const queue = createQueue({ connectionString: url, tasks: { noop: async () => { done(1); } } });
  await queue.migrate();
  // pause aborts the drains' signal: each stops claiming and returns once its running jobs end.
  let stopping = new AbortController();
  const consumers = loops(async () => { await queue.drain(BATCH, Date.now() + 10_000, { signal: stopping.signal }); });
  return {
    async publish(from) {
      // A 5 s timeout: a drain claims only jobs whose timeout fits its 10 s budget.
      await queue.publishBulk(Array.from({ length: 1000 }, (_, i) => ({ task: 'noop', body: { i: from + i }, timeoutSeconds: 5 })));
    },
    async start(onDone) {
      done = onDone;
      stopping = new AbortController();
      consumers.start();
    },
    async pause() {
      stopping.abort();
      await consumers.pause();
    },
    close: () => queue.close(),
  };
}

async function floorLoad(url: string, history: boolean): Promise<Load> {
  const pool = new pg.Pool({ connectionString: url, max: DRAINERS + 2 });
  await pool.query(SCHEMA);
  let done = (_n: number) => {};
  const consumers = loops(async () => {
    const client = await pool.connect();
    try {
      const { rows } = await client.query<{ id: string }>(CLAIM, [BATCH]);
      if (rows.length === 0) {
        await new Promise((r) => setTimeout(r, 10));
        return;
      }
      await client.query(history ? MOVE : DELETE, [rows.map((r) => r.id)]);
      done(rows.length);
    } finally {
      client.release();
    }
  });
  return {
    async publish(from) {
      const bodies = Array.from({ length: 1000 }, (_, k) => JSON.stringify({ i: from + k }));
      await pool.query(INSERT, [bodies]);
    },
    async start(onDone) {
      done = onDone;
      consumers.start();
    },
    pause: consumers.pause,
    close: () => pool.end(),
  };
}

async function graphileLoad(url: string, runners: number): Promise<Load> {
  const utils = await makeWorkerUtils({ connectionString: url, logger: silent });
  await utils.migrate();
  let started: Awaited<ReturnType<typeof run>>[] = [];
  return {
    async publish(from) {
      await utils.addJobs(Array.from({ length: 1000 }, (_, k) => ({ identifier: 'noop', payload: { i: from + k } })));
    },
    async start(done) {
      for (let i = 0; i < runners; i++) {
        started.push(await run(tunedRunner(url, async () => { done(1); })));
      }
    },
    async pause() {
      await Promise.all(started.map((runner) => runner.stop()));
      started = [];
    },
    close: async () => { await utils.release(); },
  };
}

export function openLoad(name: LoadName, url: string): Promise<Load> {
  switch (name) {
    case 'pgdrain': return pgdrainLoad(url);
    case 'floor': return floorLoad(url, false);
    case 'floor+history': return floorLoad(url, true);
    case 'graphile-worker': return graphileLoad(url, 1);
    case 'graphile-worker-2': return graphileLoad(url, 2);
  }
}

/** Producer loops side by side: one could not keep pgdrain's backlog up (it ran down to 1,000 while drains came back empty). */
const PRODUCERS = 2;

/**
 * Keeps about `backlog` of the load's jobs pending while it runs: PRODUCERS
 * loops publish 1,000 whenever fewer are left. counts.published and
 * counts.handled carry over from one run to the next; stop() ends it.
 * least() is the smallest backlog a loop saw (published and committed, not
 * yet handled) since the last call: near 0, the consumers waited for the
 * producer, and their rate was the producer's.
 */
export function produce(load: Load, counts: { published: number; handled: number }, backlog: number):
  { stop(): Promise<void>; least(): number } {
  let stopping = false;
  let publishing = 0;
  let least = Infinity;
  const loops = Array.from({ length: PRODUCERS }, async () => {
    while (!stopping) {
      least = Math.min(least, counts.published - publishing - counts.handled);
      if (counts.published - counts.handled >= backlog) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const from = counts.published; // taken before the await, so the loops publish different jobs
      counts.published += 1000;
      publishing += 1000;
      try {
        await load.publish(from);
      } finally {
        publishing -= 1000;
      }
    }
  });
  return {
    async stop() {
      stopping = true;
      await Promise.all(loops);
    },
    least() {
      const seen = least;
      least = Infinity;
      return seen;
    },
  };
}
