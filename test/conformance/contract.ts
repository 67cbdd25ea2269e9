// The driver contract: the same tests for every Driver (pg, Neon WebSocket
// Pool, Neon HTTP, PGlite), so the queue behaves the same on each. A driver's
// test file provides a Subject and calls driverContract().
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue, latestVersion, PgDrainError, translateError, type Driver, type JobContext, type TaskMap } from '../../src/index.js';

/** What a driver is, known before its tests are collected. */
export interface Traits {
  /** It holds sessions: transactions and migrate() work (all but Neon HTTP). */
  sessions: boolean;
  /** It reaches its database over a network, which can be down (all but PGlite). */
  network: boolean;
}

/** A driver whose network to its database can stop forwarding. */
export interface FreezableNetwork {
  driver: Driver;
  /** Stops forwarding, leaving the connections open. */
  freeze(): void;
  close(): Promise<void>;
}

export interface Subject {
  /** A driver on a migrated database that this test file owns. */
  driver: Driver;
  /** A driver on a database with no schema at all. */
  emptyDatabase(): Promise<Driver>;
  /** A driver whose database cannot be reached (network drivers). */
  unreachable?(): Driver;
  /**
   * A driver (on this file's database) whose network can be frozen: it stops
   * forwarding and leaves the connections open (network drivers with sessions).
   */
  freezable?(): Promise<FreezableNetwork>;
  /** A driver on this file's database that logs in as `role` (network drivers with sessions). */
  as?(role: string): Driver;
  cleanup?(): Promise<void>;
}

const borrowed = (driver: Driver): Driver => ({ ...driver, close: async () => {} });

/** Rows through the driver itself: what the queue will see. */
async function rows<R = Record<string, unknown>>(driver: Driver, text: string, params?: unknown[]): Promise<R[]> {
  return (await driver.query<R>(text, params)).rows;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => { throw new Error('expected a rejection'); }, (error: unknown) => error);
}

export function driverContract(name: string, traits: Traits, setup: () => Promise<Subject>): void {
  describe(`driver contract: ${name}`, () => {
    let s: Subject;
    let db: Driver;
    beforeAll(async () => {
      s = await setup();
      db = s.driver;
    });
    afterAll(async () => {
      await s?.driver.close();
      await s?.cleanup?.();
    });
    beforeEach(async () => {
      await db.query('truncate jobs.job_queue, jobs.job');
    });

    it('returns rows as objects with the same JS shapes as pg', async () => {
      const [row] = await rows(db,
        `select $1::text as text, $2::int as int, $3::jsonb as json, null::text as nothing, true as yes,
                2.5::numeric as num, 12345678901234::bigint as big, 12345678901234::bigint::text as id,
                '2024-05-06T07:08:09.123Z'::timestamptz as at, array['a', 'b'] as list, $4::text as absent`,
        ['héllo ✓ "quoted"', 7, JSON.stringify({ a: [1, 2.5, null], b: { c: 'ü' } }), null]);
      expect(row).toEqual({
        text: 'héllo ✓ "quoted"', int: 7, json: { a: [1, 2.5, null], b: { c: 'ü' } }, nothing: null, yes: true,
        num: '2.5', big: '12345678901234', id: '12345678901234',
        at: new Date('2024-05-06T07:08:09.123Z'), list: ['a', 'b'], absent: null,
      });
      expect(await rows(db, 'select 1 as x where false')).toEqual([]);
      expect(await rows(db, `insert into jobs.job_queue (task) select 'x' where false`)).toEqual([]);
    });

    it('publishes, drains and settles: every job done, results stored as JSON', async () => {
      const tasks: TaskMap = {
        math: { sum: async (b: { a: number; b: number }) => ({ sum: b.a + b.b }) },
        echo: async (b: unknown) => b,
        fails: async () => { throw new Error('boom on purpose'); },
      };
      const queue = createQueue({ driver: borrowed(db), tasks });
      const body = { text: 'naïve ☃', nested: { list: [1, null, true], n: -0.5 } };
      const echoId = await queue.publish('echo', body, { priority: 5 });
      const ids = await queue.publishBulk(Array.from({ length: 20 }, (_, i) => ({ task: 'math.sum', body: { a: i, b: 1 } })));
      await queue.publish('fails', {}, { maxRetries: 2 });
      expect(echoId).toMatch(/^\d+$/);
      expect(ids).toHaveLength(20);
      expect(ids.every((id) => /^\d+$/.test(id))).toBe(true);

      const report = await queue.drain(8, Date.now() + 120_000);
      expect(report).toMatchObject({ claimed: 22, succeeded: 21, retried: 1, failed: 0, stale: 0, stoppedBy: 'empty' });
      expect(report.failures).toEqual([expect.objectContaining({ task: 'fails', willRetry: true })]);
      expect(await rows(db, 'select result from jobs.job where job_id = $1', [echoId])).toEqual([{ result: body }]);
      expect(await rows(db, `select count(*)::int as n from jobs.job
                             where task = 'math.sum' and status = 'success' and (result->>'sum')::int = (body->>'a')::int + 1`))
        .toEqual([{ n: 20 }]);
      const [retry] = await rows<{ last_error: string; attempt: number }>(db,
        `select last_error, attempt from jobs.job_queue where task = 'fails'`);
      expect(retry).toMatchObject({ attempt: 1, last_error: expect.stringMatching(/^Error: boom on purpose/) });
    });

    it('two drains side by side on one driver run each job once', async () => {
      const seen = new Map<string, number>();
      const tasks: TaskMap = { count: async (_b: unknown, ctx: JobContext) => void seen.set(ctx.job.id, (seen.get(ctx.job.id) ?? 0) + 1) };
      const queue = createQueue({ driver: borrowed(db), tasks });
      const ids = await queue.publishBulk(Array.from({ length: 120 }, () => ({ task: 'count' })));
      const reports = await Promise.all([queue.drain(15, Date.now() + 120_000), queue.drain(15, Date.now() + 120_000)]);
      expect(reports[0]!.succeeded + reports[1]!.succeeded).toBe(120);
      expect([...seen.keys()].sort()).toEqual([...ids].sort());
      expect([...seen.values()].every((n) => n === 1)).toBe(true);
    });

    it('a PostgreSQL error keeps its SQLSTATE and column: bad input names the field', async () => {
      const error = await rejection(db.query(`select jobs.publish('not a task!', null)`));
      const translated = translateError(error);
      expect(translated).toBeInstanceOf(PgDrainError);
      expect(translated).toMatchObject({ code: 'invalid_argument', field: 'task' });
      const missing = translateError(await rejection(db.query('select jobs.no_such_function()')));
      expect(missing).toMatchObject({ code: 'not_migrated' });
      expect(await rows(db, 'select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
    });

    if (traits.sessions) {
      it('transactions commit, and roll back when the callback throws', async () => {
        const queue = createQueue({ driver: borrowed(db), tasks: {} });
        const kept = await db.transaction(async (tx) => queue.using(tx).publish('in.tx', { kept: true }));
        const thrown = await rejection(db.transaction(async (tx) => {
          await queue.using(tx).publish('in.tx', { kept: false });
          throw new Error('caller changed its mind');
        }));
        expect(thrown).toMatchObject({ message: 'caller changed its mind' });
        expect(await rows(db, `select job_id::text as id, body from jobs.job_queue where task = 'in.tx'`))
          .toEqual([{ id: kept, body: { kept: true } }]);
      });

      it('a statement sent on a transaction after it ended is refused: it neither commits nor lands in a later transaction', async () => {
        const queue = createQueue({ driver: borrowed(db), tasks: {} });
        let late: Promise<unknown> | undefined;
        const thrown = await rejection(db.transaction(async (tx) => {
          // A forgotten promise: it publishes after the callback has thrown and the transaction rolled back.
          late = rejection(new Promise((resolve) => setTimeout(resolve, 50)).then(() => queue.using(tx).publish('late.tx')));
          throw new Error('caller changed its mind');
        }));
        expect(thrown).toMatchObject({ message: 'caller changed its mind' });
        // The next transaction may get the same connection while the late statement comes: it stays open until the
        // late statement has been answered (not a fixed 100 ms, after which a late one came past its end, unchecked).
        const next = await db.transaction(async (tx) => {
          await late;
          return (await tx.query<{ n: number }>(`select count(*)::int as n from jobs.job_queue where task = 'late.tx'`)).rows[0]!.n;
        });
        expect(await late).toMatchObject({ message: expect.stringMatching(/transaction has ended|Transaction is closed/) });
        expect(next).toBe(0);
        expect(await rows(db, `select count(*)::int as n from jobs.job_queue where task = 'late.tx'`)).toEqual([{ n: 0 }]);
      });

      it('migrate() applies every migration once on an empty database', async () => {
        const fresh = await s.emptyDatabase();
        try {
          const queue = createQueue({ driver: fresh, tasks: {} });
          expect(await queue.migrate()).toEqual(Array.from({ length: latestVersion }, (_, i) => i + 1));
          expect(await queue.migrate()).toEqual([]);
          expect(await queue.publish('after.migrate')).toMatch(/^\d+$/);
        } finally {
          await fresh.close();
        }
      });
    } else {
      it('transactions and migrate() are refused with an error naming the driver to use, nothing written', async () => {
        const queue = createQueue({ driver: borrowed(db), tasks: {} });
        const error = await rejection(db.transaction(async (tx) => queue.using(tx).publish('in.tx')));
        expect(error).toMatchObject({ code: 'invalid_argument', field: 'driver', message: expect.stringMatching(/neonDriver/) });
        expect(await rows(db, 'select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
        const fresh = await s.emptyDatabase();
        try {
          expect(await rejection(createQueue({ driver: fresh, tasks: {} }).migrate()))
            .toMatchObject({ code: 'invalid_argument', field: 'driver' });
          expect(await rows(fresh, `select count(*)::int as n from pg_namespace where nspname = 'jobs'`)).toEqual([{ n: 0 }]);
        } finally {
          await fresh.close();
        }
      });
    }

    if (traits.network) {
      it('an unreachable database is "database unavailable", and nothing is published', async () => {
        expect(s.unreachable, 'a network driver must provide unreachable()').toBeTypeOf('function');
        const queue = createQueue({ driver: s.unreachable!(), tasks: {} });
        try {
          const error = await rejection(queue.publish('lost.maybe', {}));
          expect(error).toMatchObject({ code: 'database_unavailable' });
        } finally {
          await queue.close();
        }
        expect(await rows(db, 'select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
      });
    }

    if (traits.network && traits.sessions) {
      it('a transaction whose connection the server ends rejects, and the process lives on', async () => {
        // A checked-out pg client emits 'error' and its pool does not listen: unhandled, it ends the process.
        const fresh = await s.emptyDatabase();
        try {
          const outcome = await fresh.transaction(async (tx) => {
            const [{ pid }] = (await tx.query<{ pid: number }>('select pg_backend_pid() as pid')).rows as [{ pid: number }];
            await rows(db, 'select pg_terminate_backend($1)', [pid]);
            await new Promise((resolve) => setTimeout(resolve, 200)); // the FATAL message and the socket's end arrive
            await tx.query('select 1');
          }).then(() => 'committed', (e: unknown) => e);
          expect(outcome).toBeInstanceOf(Error);
          expect(await rows(fresh, 'select 1 as one')).toEqual([{ one: 1 }]);
        } finally {
          await fresh.close();
        }
      });

      /** Runs fn with a freezable() network, closing it after. */
      const withFreezable = async (fn: (network: FreezableNetwork) => Promise<void>) => {
        expect(s.freezable, 'a network driver with sessions must provide freezable()').toBeTypeOf('function');
        const network = await s.freezable!();
        try {
          await fn(network);
        } finally {
          await network.close();
        }
      };

      it('close() ends at once a connection still opening to a server that never answers',
         () => withFreezable(async (network) => {
        network.freeze(); // the connection is accepted, and its start-up never answered
        const pending = network.driver.query('select 1').then(() => 'answered', () => 'failed');
        await network.driver.close(); // a pool's end waits for every client it is opening
        expect(await pending).toBe('failed');
      }));

      it('close() ends a connection whose statement never gets a reply, once it has waited',
         () => withFreezable(async (network) => {
        // In a transaction, so its client is checked out before the network freezes.
        let sent!: () => void;
        const inFlight = new Promise<void>((resolve) => (sent = resolve));
        const unanswered = network.driver.transaction(async (tx) => {
          await tx.query('select 1');
          network.freeze();
          const reply = tx.query('select 2');
          sent();
          await reply;
        }).then(() => 'committed', () => 'failed');
        await inFlight;
        await network.driver.close(); // a pool's end waits for every checked-out client
        expect(await unanswered).toBe('failed');
      }));
    }

    if (traits.network && traits.sessions) {
      /** Runs fn with a login role the server lets hold one connection, dropped after. */
      const withOneConnection = async (fn: (role: string) => Promise<void>) => {
        expect(s.as, 'a network driver with sessions must provide as()').toBeTypeOf('function');
        const role = `pgdrain_one_${Math.random().toString(36).slice(2, 10)}`;
        await db.query(`create role ${role} login connection limit 1`);
        try {
          await fn(role);
        } finally {
          await db.query(`drop owned by ${role}`); // its grants
          await db.query(`drop role ${role}`);
        }
      };

      it('a server that refuses one more connection: statements wait for the one open, none fails',
         () => withOneConnection(async (role) => {
        const limited = s.as!(role);
        try {
          // The role's one connection first: PostgreSQL may refuse every one of a burst of
          // connections racing for the last slot, and with none open a refusal is an error.
          expect(await rows(limited, 'select 1 as one')).toEqual([{ one: 1 }]);
          // Twelve at once: the pool tries to open a connection for each, and the server refuses them.
          const answers = await Promise.all(Array.from({ length: 12 }, (_, i) =>
            rows<{ i: number }>(limited, 'select $1::int as i', [i])));
          expect(answers.flat().map((r) => r.i)).toEqual([...Array(12).keys()]);
        } finally {
          await limited.close();
        }
      }));

      it('…and with none of its own open, the refusal fails the statement as "database unavailable"',
         () => withOneConnection(async (role) => {
        const holder = s.as!(role);
        const refused = s.as!(role);
        try {
          await holder.transaction(async (tx) => {
            await tx.query('select 1'); // holds the role's one connection
            const error = translateError(await rejection(refused.query('select 1')));
            expect(error).toBeInstanceOf(PgDrainError);
            expect(error).toMatchObject({ code: 'database_unavailable', message: expect.stringMatching(/too many connections/) });
          });
        } finally {
          await holder.close();
          await refused.close();
        }
      }));

      it('a drain whose handlers publish, on a role allowed one connection: every job succeeds at its first attempt',
         () => withOneConnection(async (role) => {
        await db.query(`grant usage on schema jobs to ${role}`);
        const tasks: TaskMap = {
          parent: async (_b: unknown, ctx: JobContext) => void await ctx.publish('child', {}),
          child: async () => {},
        };
        const queue = createQueue({ driver: s.as!(role), tasks });
        try {
          await queue.publishBulk(Array.from({ length: 30 }, () => ({ task: 'parent' }))); // opens the one connection
          const report = await queue.drain(30, Date.now() + 120_000);
          expect(report).toMatchObject({ claimed: 60, succeeded: 60, retried: 0, failed: 0, stoppedBy: 'empty' });
        } finally {
          await queue.close();
        }
      }));
    }

    it('close() twice is safe, and a closed driver refuses queries', async () => {
      const fresh = await s.emptyDatabase();
      expect(await rows(fresh, 'select 1 as one')).toEqual([{ one: 1 }]);
      await fresh.close();
      await fresh.close();
      // As a database that is gone: the HTTP API answers 503, not 500.
      await expect(fresh.query('select 1')).rejects.toMatchObject({ code: 'database_unavailable' });
      await expect(fresh.transaction(async (tx) => tx.query('select 1'))).rejects.toMatchObject({ code: 'database_unavailable' });
    });
  });
}
