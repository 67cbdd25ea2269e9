import pg from 'pg';
import { pgConnectionString } from '../database-url.js';
import { PgDrainError, translateError, ValidationError } from '../errors.js';
import { waitForOptionsSchema } from '../job-options.js';
import { jobIdSchema, parse } from '../options.js';
import { timerAt } from '../timeouts.js';
import type { JobOutcome } from '../types.js';
import { CHANNELS, queueEvent, type Channel, type QueueEvent } from './event-channels.js';
import { JOB_STATE_SQL, toOutcome, type JobState } from './job-outcome.js';
import { connectTimeoutMs, endClient, type Socketed } from './pg-pool.js';
import { boundedRead, boundGaveUp, type ReadBound } from './session-read.js';
import { waitLimits } from './wait-limits.js';

export type { QueueEvent } from './event-channels.js';
export type { ReadBound } from './session-read.js';

const closedError = () => new PgDrainError('invalid_argument', 'these job events are closed');

/** How long after losing its session (or failing to open one) a new one is tried. */
const RECONNECT_MS = 1000;
/** How many opens in a row waitFor and subscribe try when each session is lost while it opens. */
const OPEN_TRIES = 5;

/** Errors of an open whose session was lost after the server answered (terminated before its LISTEN ran). */
const lostOpening = new WeakSet<object>();

export interface PgJobEventsOptions {
  /**
   * Bounds each read on the session once it is connected: its LISTEN and
   * each of waitFor's checks of the job (`pgdrain wait --db-timeout`). A read
   * given up ends the session and rejects the waitFor or subscribe that sent
   * it with the bound's error; the others open a new session.
   */
  readBound?: ReadBound;
}

interface Waiter {
  id: string;
  wake(): void;
}

/**
 * LISTENs on one dedicated pg connection (LISTEN needs a session, so this is
 * a node-postgres feature: HTTP drivers and PGlite-in-a-Worker cannot) and
 * turns pgdrain's NOTIFYs into events and waitFor() answers. The connection
 * opens on first use; close() ends it.
 */
export class PgJobEvents {
  private client: pg.Client | undefined;
  /** The client connecting now, so close() can end it. */
  private opening: pg.Client | undefined;
  private ready: Promise<pg.Client> | undefined;
  private closed = false;
  /** A session was open before: the next one wakes the waiters. */
  private hadSession = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Ends each wait between open()'s tries: close() cuts them short. */
  private readonly pauses = new Set<() => void>();
  private readonly waiters = new Set<Waiter>();
  private readonly listeners = new Set<(e: QueueEvent) => void>();
  /** The last check sent: waiters' checks go one at a time (pg 8 deprecates queuing queries on a client). */
  private lastCheck: Promise<unknown> = Promise.resolve();

  /** channels: the ones to LISTEN on (default all three; a lingering drain needs only pgdrain_queued). */
  constructor(private readonly connectionString: string,
              private readonly channels: readonly Channel[] = Object.keys(CHANNELS) as Channel[],
              private readonly options: PgJobEventsOptions = {}) {}

  /**
   * Calls listener for every event until the returned function is called.
   * Rejects when the database cannot be reached; a session lost while it
   * opens is opened again as waitFor's is, one lost later too.
   */
  async subscribe(listener: (e: QueueEvent) => void): Promise<() => void> {
    await this.open();
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves with the job's outcome once it has ended (at once if it has):
   * it waits for pgdrain_completed rather than polling. Rejects for an
   * unknown id, on options.signal, after options.timeoutMs, or when the
   * database cannot be reached; a session lost (terminated, a restart),
   * even while it opens, is opened again and the job asked again.
   */
  async waitFor(jobId: string, waitOptions: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined } = {}): Promise<JobOutcome> {
    const id = parse(jobIdSchema, jobId, 'jobId');
    const options = parse(waitForOptionsSchema, waitOptions, 'options');
    let wake!: () => void;
    let woken = new Promise<void>((resolve) => (wake = resolve));
    const waiter: Waiter = { id, wake: () => wake() };
    // At the timeout the job is asked once more before the wait gives up (waitLimits).
    const { stop, timedOut, stillActive, release } = waitLimits(id, options, () => wake());
    try {
      await this.open(stop);
      this.waiters.add(waiter);
      for (;;) {
        // Asked after LISTEN and after registering, so an end in between still wakes us.
        // A new session after a lost one wakes every waiter: what it missed is asked here.
        const session = await this.open(stop);
        let state: JobState;
        try {
          const check = this.lastCheck.then(() => boundedRead<JobState>(session, this.options.readBound, JOB_STATE_SQL, [id]));
          this.lastCheck = check.catch(() => {});
          state = (await Promise.race([check, stop])).rows[0]!;
        } catch (error) {
          // The session was lost under the check (its error can come before the
          // client's own 'error' event): ask again on the next one, which wakes us.
          const e = translateError(error);
          const lostUnder = this.client !== session || (e instanceof PgDrainError && e.code === 'database_unavailable');
          if (this.closed || !lostUnder || boundGaveUp(error)) throw error;
          if (this.client === session) {
            this.lost(session);
            void endClient(session);
          }
          await Promise.race([woken, stop]);
          woken = new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        if (state.ended) return toOutcome(state.ended);
        if (!state.active) throw new ValidationError('jobId', `no job with id ${id}`);
        if (timedOut()) throw stillActive();
        await Promise.race([woken, stop]);
        woken = new Promise<void>((resolve) => (wake = resolve));
      }
    } catch (error) {
      throw translateError(error);
    } finally {
      release();
      this.waiters.delete(waiter);
    }
  }

  /** Ends the LISTEN connection (at once on a server that does not answer); pending waitFor calls reject. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    for (const end of this.pauses) end(); // open()'s next try fails at once: the events are closed
    const { client, opening } = this;
    this.client = this.opening = this.ready = undefined;
    // Its socket, not end(): pg's connect() never settles once end() was called during it.
    (opening as Socketed | undefined)?.connection?.stream?.destroy();
    if (client) await endClient(client);
    for (const w of this.waiters) w.wake(); // their next connect() fails: the events are closed
  }

  /**
   * connect() for waitFor and subscribe, opened again (RECONNECT_MS apart,
   * OPEN_TRIES in a row at most, within stop if given) when the session was
   * lost while it opened, as one lost later is: the server was there. One it
   * cannot reach fails at once.
   */
  private async open(stop?: Promise<never>): Promise<pg.Client> {
    // No stop (subscribe): not a never-settling one, whose reactions would pile up.
    const within = <T>(p: Promise<T>) => (stop ? Promise.race([p, stop]) : p);
    for (let tries = 1; ; tries++) {
      try {
        return await within(this.connect());
      } catch (error) {
        if (this.closed || tries >= OPEN_TRIES || !lostOpening.has(error as object)) throw error;
      }
      let cancel = () => {};
      let end = () => {};
      await within(new Promise<void>((resolve) => {
        cancel = timerAt(Date.now() + RECONNECT_MS, resolve);
        this.pauses.add(end = resolve);
      })).finally(() => {
        cancel();
        this.pauses.delete(end);
      });
    }
  }

  private connect(): Promise<pg.Client> {
    if (this.closed) return Promise.reject(closedError());
    this.ready ??= (async () => {
      // application_name: an operator can tell this session in pg_stat_activity (the URL's wins).
      const client = new pg.Client({ connectionString: pgConnectionString(this.connectionString), application_name: 'pgdrain-events',
                                     connectionTimeoutMillis: connectTimeoutMs(this.connectionString) });
      this.opening = client;
      client.on('error', () => this.lost(client));
      client.on('end', () => this.lost(client));
      client.on('notification', (n) => this.dispatch(n.channel, n.payload ?? ''));
      let reached = false;
      try {
        await client.connect();
        reached = true;
        await boundedRead(client, this.options.readBound, this.channels.map((c) => `listen ${c}`).join('; '));
      } catch (error) {
        await endClient(client);
        if (this.closed) throw closedError();
        if (boundGaveUp(error)) throw error; // final: not lost while opening
        const e = translateError(error);
        // Terminated (57P01) or lost once connected: the server answered, so open again (open()).
        const terminated = (error as { code?: unknown } | null)?.code === '57P01';
        if ((reached || terminated) && e instanceof PgDrainError && e.code === 'database_unavailable') lostOpening.add(e);
        throw e;
      } finally {
        if (this.opening === client) this.opening = undefined;
      }
      if (this.closed) {
        await endClient(client);
        throw closedError();
      }
      this.client = client;
      // A session after a lost one, whoever opened it: every waiter asks again
      // (the NOTIFYs sent meanwhile went to the lost session), and queued
      // listeners hear '*' (a lingering drain claims once: a job published in
      // the gap would otherwise wait for its next poll).
      if (this.hadSession) {
        for (const w of this.waiters) w.wake();
        if (this.channels.includes('pgdrain_queued')) this.emit({ event: 'queued', ids: [], queue: '*' });
      }
      this.hadSession = true;
      return client;
    })().catch((error: unknown) => {
      this.ready = undefined;
      throw translateError(error);
    });
    return this.ready;
  }

  /**
   * The session is gone. With someone waiting or listening, a new one opens
   * (about once a second until it does), every waiter asks again and queued
   * listeners hear '*': the NOTIFYs sent meanwhile are lost with the session.
   */
  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.ready = undefined;
    if (!this.closed && (this.waiters.size > 0 || this.listeners.size > 0)) this.reconnectSoon();
  }

  private reconnectSoon(): void {
    this.reconnectTimer ??= setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed || this.client) return;
      this.connect().catch(() => this.reconnectSoon());
    }, RECONNECT_MS);
  }

  private dispatch(channel: string, payload: string): void {
    const e = queueEvent(channel, payload);
    if (!e) return;
    if (e.event === 'completed' && this.waiters.size > 0) {
      const ended = new Set(e.ids);
      for (const w of this.waiters) if (ended.has(w.id)) w.wake();
    }
    this.emit(e);
  }

  private emit(e: QueueEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(e);
      } catch (error) {
        // Thrown outside pg's socket handler (which it would break mid-message),
        // once the other listeners have the event: an uncaught error as any
        // EventEmitter listener's would be.
        queueMicrotask(() => { throw error; });
      }
    }
  }
}
