// An error is stored at most 8 KiB of text (8192 characters, the marker
// included): a handler's Error carrying megabytes (an HTTP client's, with the
// response body in its message) is cut by the drain before its settle, and
// one a SQL caller hands to jobs.nack, jobs.settle or jobs.fail is cut by the
// database by the same rule, as is a cancel's reason (jobs.cancel, cancel_bulk,
// cancel_key, purge_queue).
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { cutError, MAX_ERROR_CHARS } from '../src/error-text.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const KEPT = MAX_ERROR_CHARS - 64;
const cut = (text: string) => `${text.slice(0, KEPT)}\n… (${text.length - KEPT} characters cut)`;

beforeEach(async () => void (await sql('truncate jobs.job_queue, jobs.job')));

const consumed = async (maxRetries: number) => {
  const [row] = await sql<{ id: string }>(`select jobs.publish('t', '{}', max_retries => $1)::text as id`, [maxRetries]);
  await sql('select jobs.consume(1)');
  return row!.id;
};
const lastError = async (id: string) =>
  (await sql<{ e: string }>('select last_error as e from jobs.job_queue where job_id = $1', [id]))[0]!.e;
const endedError = async (id: string) =>
  (await sql<{ e: string }>('select error as e from jobs.job where job_id = $1', [id]))[0]!.e;

describe('a handler whose error is megabytes', () => {
  it('is cut in the drain: the report, the hook and the job hold 8 KiB with a marker of how much was cut', async () => {
    const body = 'x'.repeat(3_000_000);
    const ends: string[] = [];
    const q = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {
      fetch: async () => { throw new Error(`HTTP 502: ${body}`); },
    } });
    const id = await q.publish('fetch', null, { maxRetries: 0, timeoutSeconds: 30 });
    const report = await q.drain(5, Date.now() + 60_000, { onJobEnd: (e) => void ends.push(e.error!) });
    const stack = `Error: HTTP 502: ${body}`; // V8's stack: the message, then its frames, all cut away
    expect(report).toMatchObject({ claimed: 1, failed: 1 });
    const error = report.failures[0]!.error;
    expect(error.length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
    expect(error.slice(0, KEPT)).toBe(stack.slice(0, KEPT));
    expect(error).toMatch(/\n… \(\d+ characters cut\)$/);
    expect(Number(/\((\d+) characters cut\)$/.exec(error)![1])).toBeGreaterThan(3_000_000 - KEPT);
    expect(ends).toEqual([error]);
    expect(await endedError(id)).toBe(error); // what the drain sent, not cut again
  });
});

describe('an error of emoji (one character each, two UTF-16 units)', () => {
  const databaseCut = async (text: string) => (await sql<{ e: string }>('select jobs.cut_error($1) as e', [text]))[0]!.e;

  it('is cut by the drain as the database cuts it: by characters, the marker counting characters', async () => {
    for (const text of ['😀'.repeat(5_000), '😀'.repeat(MAX_ERROR_CHARS), `${'😀'.repeat(9_000)}tail`,
                        `${'a'.repeat(KEPT - 1)}${'😀'.repeat(200)}`, 'x'.repeat(MAX_ERROR_CHARS + 1)]) {
      expect(cutError(text)).toBe(await databaseCut(text));
    }
    expect(cutError('😀'.repeat(9_000))).toBe(`${'😀'.repeat(KEPT)}\n… (${9_000 - KEPT} characters cut)`);
  });

  it("a handler's error of 5000 emoji (10000 units, 5000 characters) is kept whole, as the database would", async () => {
    const message = '😀'.repeat(5_000);
    const q = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {
      emoji: async () => { throw new Error(message); },
    } });
    const id = await q.publish('emoji', null, { maxRetries: 0, timeoutSeconds: 30 });
    const report = await q.drain(5, Date.now() + 60_000);
    const error = report.failures[0]!.error;
    expect(error.startsWith(`Error: ${message}\n`)).toBe(true);
    expect(error).not.toMatch(/characters cut\)$/);
    expect(await endedError(id)).toBe(error);
  });
});

describe('SQL callers', () => {
  it('jobs.nack: a retry keeps a cut last_error; the failure at its last retry a cut error', async () => {
    const big = 'y'.repeat(200_000);
    const id = await consumed(1);
    expect(await sql('select jobs.nack($1::bigint, $2) as ok', [id, big])).toEqual([{ ok: true }]);
    expect(await lastError(id)).toBe(cut(big));
    expect(cut(big)).toHaveLength(MAX_ERROR_CHARS - 64 + '\n… (191872 characters cut)'.length);
    await sql(`update jobs.job_queue set scheduled_at = now() where job_id = $1`, [id]);
    await sql('select jobs.consume(1)');
    expect(await sql('select jobs.nack(array[$1::bigint], array[$2]) as n', [id, big])).toEqual([{ n: 1 }]);
    expect(await endedError(id)).toBe(cut(big));
  });

  it('jobs.settle: a fail outcome; an ack beside it is settled as ever', async () => {
    const big = 'z'.repeat(70_000);
    const failing = await consumed(3);
    const ok = await consumed(3);
    const r = await sql<{ r: Record<string, number> }>(`select jobs.settle(jsonb_build_array(
        jsonb_build_object('id', $1::bigint, 'attempt', 1, 'outcome', 'fail', 'error', $3::text),
        jsonb_build_object('id', $2::bigint, 'attempt', 1, 'outcome', 'ack', 'result', 'done'))) as r`, [failing, ok, big]);
    expect(r[0]!.r).toMatchObject({ succeeded: 1, failed: 1 });
    expect(await endedError(failing)).toBe(cut(big));
  });

  it('jobs.fail: a reason past the bound is cut', async () => {
    const [row] = await sql<{ id: string }>(`select jobs.publish('t', '{}')::text as id`);
    const big = 'r'.repeat(100_000);
    expect(await sql('select jobs.fail(array[$1::bigint], $2) as n', [row!.id, big])).toEqual([{ n: 1 }]);
    expect(await endedError(row!.id)).toBe(`failed: ${cut(big)}`);
  });

  // A cancel's reason too: jobs.cancel_key ends its job through jobs.cancel, jobs.purge_queue (waiting jobs only) through cancel_bulk.
  const cancels: [string, (id: string, key: string, reason: string) => Promise<unknown>, boolean][] = [
    ['jobs.cancel', (id, _, reason) => sql('select jobs.cancel($1::bigint, $2)', [id, reason]), true],
    ['jobs.cancel_bulk', (id, _, reason) => sql('select jobs.cancel_bulk(array[$1::bigint], $2)', [id, reason]), true],
    ['jobs.cancel_key', (_, key, reason) => sql('select jobs.cancel_key($1, $2)', [key, reason]), true],
    ['jobs.purge_queue', (_, __, reason) => sql(`select jobs.purge_queue('cut_q', $1)`, [reason]), false],
  ];
  it.each(cancels)('%s: a reason past the bound is cut (a waiting job\'s error; a running one\'s cancel request)', async (_, call, running) => {
    await sql(`select jobs.create_queue('cut_q')`);
    const big = 'r'.repeat(100_000);
    const publish = async (key: string) =>
      (await sql<{ id: string }>(`select jobs.publish('t', '{}', queue => 'cut_q', dedupe_key => $1)::text as id`, [key]))[0]!.id;
    const waiting = await publish('k1');
    await call(waiting, 'k1', big);
    expect(await endedError(waiting)).toBe(`cancelled: ${cut(big)}`);
    if (!running) return;
    const claimed = await publish('k2');
    await sql(`select jobs.consume(1, queue => 'cut_q')`);
    await call(claimed, 'k2', big);
    expect(await sql('select cancel_reason as r from jobs.job_queue where job_id = $1', [claimed])).toEqual([{ r: `cancelled: ${cut(big)}` }]);
  });

  it("a reason of exactly 8192 characters after 'cancelled: ', and a fail's reason before a long last error, stay within the bound", async () => {
    const reason = 'r'.repeat(MAX_ERROR_CHARS); // within the bound alone: not cut by itself
    const publish = async (maxRetries = 0) =>
      (await sql<{ id: string }>(`select jobs.publish('t', '{}', max_retries => $1, timeout_seconds => 1)::text as id`, [maxRetries]))[0]!.id;
    const waiting = await publish();
    await sql('select jobs.cancel($1::bigint, $2)', [waiting, reason]);
    expect(await endedError(waiting)).toBe(cut(`cancelled: ${reason}`));
    // A running one: its cancel request, and its end when its lease passes with no settle.
    const running = await publish();
    await sql(`select jobs.claim(1, 't', null, null, null, null, 'W')`);
    await sql('select jobs.cancel_bulk(array[$1::bigint], $2)', [running, reason]);
    expect(await sql('select cancel_reason as r from jobs.job_queue where job_id = $1', [running]))
      .toEqual([{ r: cut(`cancelled: ${reason}`) }]);
    expect(await sql(`select jobs.expire(100, now() + interval '1 minute') as n`)).toEqual([{ n: 1 }]);
    expect(await endedError(running)).toBe(cut(`cancelled: ${reason}`));
    // jobs.fail puts its reason before the job's last error: both 8 KiB.
    const retried = await consumed(3);
    await sql('select jobs.nack($1::bigint, $2)', [retried, 'e'.repeat(MAX_ERROR_CHARS)]);
    await sql('select jobs.fail(array[$1::bigint], $2)', [retried, reason]);
    expect(await endedError(retried)).toBe(cut(`failed: ${reason}\n${'e'.repeat(MAX_ERROR_CHARS)}`));
  });

  it("a running job cancelled with a long reason, then nacked with a long error: its error is cut whole, and a settle sent again counts it", async () => {
    const [row] = await sql<{ id: string }>(`select jobs.publish('t', '{}', max_retries => 3)::text as id`);
    const id = row!.id;
    expect(await sql(`select attempt from jobs.claim(1, 't', null, null, null, null, 'W')`)).toEqual([{ attempt: 1 }]);
    const reason = 'r'.repeat(20_000);
    const error = 'e'.repeat(20_000);
    expect(await sql('select jobs.cancel($1::bigint, $2) as s', [id, reason])).toEqual([{ s: 'cancelling' }]);
    const settle = async () => (await sql<{ r: Record<string, unknown> }>(
      `select jobs.settle_arrays(array[$1::bigint], array[1], array['nack'], null, array[$2], worker_id => 'W') as r`, [id, error]))[0]!.r;
    expect(await settle()).toMatchObject({ cancelled: 1, stale: 0, cancelled_ids: `${id}:1` });
    // The reason (cut to 8 KiB, after 'cancelled: ') and the error (cut to 8 KiB), then the whole cut once.
    const whole = `cancelled: ${cut(reason)}\n${cut(error)}`;
    expect(await endedError(id)).toBe(cut(whole));
    expect(await endedError(id)).toHaveLength(MAX_ERROR_CHARS - 64 + `\n… (${whole.length - KEPT} characters cut)`.length);
    // Its reply lost, the worker sends it again: what its first call did, not stale.
    expect(await settle()).toMatchObject({ cancelled: 1, stale: 0, cancelled_ids: `${id}:1` });
    // A reason short enough that the error's head is kept: recognised the same.
    const [next] = await sql<{ id: string }>(`select jobs.publish('t', '{}', max_retries => 3)::text as id`);
    await sql(`select jobs.claim(1, 't', null, null, null, null, 'W')`);
    await sql('select jobs.cancel($1::bigint, $2) as s', [next!.id, 'r'.repeat(5_000)]);
    const again = async () => (await sql<{ r: Record<string, unknown> }>(
      `select jobs.settle_arrays(array[$1::bigint], array[1], array['nack'], null, array[$2], worker_id => 'W') as r`, [next!.id, error]))[0]!.r;
    expect(await again()).toMatchObject({ cancelled: 1, stale: 0 });
    expect(await endedError(next!.id)).toBe(cut(`cancelled: ${'r'.repeat(5_000)}\n${cut(error)}`));
    expect(await again()).toMatchObject({ cancelled: 1, stale: 0 });
  });

  it('a snooze after an error of 8 KiB keeps its last_error within the bound, and so does the success that follows', async () => {
    const id = await consumed(3);
    const error = 'e'.repeat(MAX_ERROR_CHARS);
    await sql(`select jobs.settle_arrays(array[$1::bigint], array[1], array['nack'], null, array[$2], array[now()])`, [id, error]);
    await sql('select jobs.consume(1)');
    const snooze = () => sql(`select jobs.settle_arrays(array[$1::bigint], array[2], array['release'], retry_at => array[now()])`, [id]);
    await snooze();
    const first = await lastError(id);
    const head = first.split('\n')[0]!;
    expect(head).toMatch(/^snoozed until \S+ \(1 in a row\)$/);
    expect(first).toBe(cut(`${head}\n${error}`));
    await sql('select jobs.consume(1)');
    await snooze(); // again: its count goes up, what was below the first line stays
    const second = await lastError(id);
    expect(second.split('\n')[0]).toMatch(/^snoozed until \S+ \(2 in a row\)$/);
    expect(second.slice(second.indexOf('\n'))).toBe(first.slice(first.indexOf('\n')));
    expect(second.length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
    await sql('select jobs.consume(1)');
    expect(await sql(`select jobs.ack($1::bigint) as ok`, [id])).toEqual([{ ok: true }]);
    expect((await endedError(id)).length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
  });

  it('keeps an error of exactly 8192 characters, and one of 5000 two-byte characters, whole', async () => {
    const exact = 'e'.repeat(MAX_ERROR_CHARS);
    const wide = 'é'.repeat(5_000); // 10000 bytes, 5000 characters
    const a = await consumed(3);
    const b = await consumed(3);
    await sql('select jobs.nack(array[$1::bigint, $2::bigint], array[$3, $4])', [a, b, exact, wide]);
    expect(await lastError(a)).toBe(exact);
    expect(await lastError(b)).toBe(wide);
  });
});
