// What jobs.run_http_drain posts must be a body the endpoint takes: a
// budgetSeconds added to a registered body that has none (as d6343b0 did)
// could ask for more than the server's maximum and be refused 400 at every
// tick, so an HTTP drain registered with the defaults would never drain.
// pg_net cannot be installed here: a stand-in records the post (as
// cron.test.ts's), and the test sends it as pg_net would to a real app on a
// real server, against a real PostgreSQL.
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, describe, expect, it } from 'vitest';
import { createApp, type HttpLimits } from '../src/http/index.js';
import { createQueue, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { PG_NET_STAND_IN } from './support/pg-net-stand-in.js';

const db = await testDb();
const sql = db.sql;
const TOKEN = 'http-drain-token-0123456789';
const tasks: TaskMap = { t: async () => 'done' };
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });

await sql(PG_NET_STAND_IN);

const servers: ServerType[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((done) => s.close(done))));
});
const listen = (limits: Partial<HttpLimits>) => new Promise<string>((done) => {
  servers.push(serve({ fetch: createApp({ queue, token: TOKEN, limits }).fetch, port: 0, hostname: '127.0.0.1' },
                     (info) => done(`http://127.0.0.1:${info.port}`)));
});

/** Registers an HTTP drain to url as jobs.schedule_http_drain stores one (pg_cron left out), runs it, and posts what it sent. */
async function runHttpDrain(name: string, url: string, body: object, timeoutMs?: number) {
  await sql(`insert into jobs.http_drain (name, url, token, body, timeout_ms) values ($1, $2, $3, $4, $5)`,
            [name, url, TOKEN, body, timeoutMs ?? 60000]);
  const [row] = await sql<{ id: string }>(`select jobs.run_http_drain($1)::text as id`, [name]);
  const id = row!.id;
  const [sent] = await sql<{ url: string; body: object; headers: Record<string, string>; timeout_milliseconds: number }>(
    'select url, body, headers, timeout_milliseconds from net.requests where id = $1', [id]);
  const res = await fetch(sent!.url, { method: 'POST', headers: sent!.headers, body: JSON.stringify(sent!.body),
                                       signal: AbortSignal.timeout(sent!.timeout_milliseconds) });
  return { status: res.status, answer: await res.json() as Record<string, unknown>, sent: sent! };
}

describe('jobs.run_http_drain with no budgetSeconds in its body', () => {
  it("drains on a Worker at its default DRAIN_DEADLINE_SECONDS (25: the server's maximum budget)", async () => {
    await queue.publish('t', {}, { timeoutSeconds: 5 });
    const url = await listen({ maxBudgetSeconds: 25, defaultBudgetSeconds: 25 });
    const { status, answer } = await runHttpDrain('worker', `${url}/drain`, {});
    expect([status, answer]).toEqual([200, expect.objectContaining({ claimed: 1, succeeded: 1 })]);
  });

  it('drains on pgdrain serve --max-budget 30', async () => {
    await queue.publish('t', {}, { timeoutSeconds: 5 });
    const url = await listen({ maxBudgetSeconds: 30 });
    const { status, answer } = await runHttpDrain('serve', `${url}/drain`, { batchSize: 10 });
    expect([status, answer]).toEqual([200, expect.objectContaining({ claimed: 1, succeeded: 1 })]);
  });

  it("keeps a budgetSeconds given in the URL's query string", async () => {
    await queue.publish('t', {}, { timeoutSeconds: 5 });
    const url = await listen({ maxBudgetSeconds: 30 });
    const { status, answer } = await runHttpDrain('query', `${url}/drain?budgetSeconds=20`, {});
    expect([status, answer]).toEqual([200, expect.objectContaining({ claimed: 1, succeeded: 1 })]);
  });
});
