// The dashboard's actions on a real server against a real PostgreSQL: servers
// of createApp with dashboardActions, and requests as a browser on the page
// sends them (Basic, its Origin, its form token). For the dashboard tests.
import { serve, type ServerType } from '@hono/node-server';
import { afterAll } from 'vitest';
import { createApp } from '../../src/http/index.js';
import { createQueue, type TaskMap } from '../../src/index.js';
import { testDb } from './db.js';

export const TOKEN = 'dashboard-actions-token-0123456789';
export const SECRET = 'dashboard-actions-hmac-secret-0123456789';

/** A database of its own, a server with actions (base: token and secret) and a read-only one, and the requests. */
export async function dashboardRig() {
  const db = await testDb();
  const sql = db.sql;
  const tasks: TaskMap = { noop: async () => null };
  const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });

  const servers: ServerType[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((done) => s.close(done))));
  });
  function listen(options: { token?: string; hmacSecret?: string; dashboardActions?: boolean;
    limits?: { dashboardRedriveRows: number } }): Promise<string> {
    return new Promise((done) => {
      servers.push(serve({ fetch: createApp({ queue, ...options }).fetch, port: 0, hostname: '127.0.0.1' },
                         (info) => done(`http://127.0.0.1:${info.port}`)));
    });
  }
  const base = await listen({ token: TOKEN, hmacSecret: SECRET, dashboardActions: true });
  const readOnly = await listen({ token: TOKEN });

  const basic = (password = TOKEN) => `Basic ${Buffer.from(`ops:${password}`).toString('base64')}`;

  async function page(path = '/dashboard', url = base, password = TOKEN) {
    const res = await fetch(`${url}${path}`, { headers: { authorization: basic(password) } });
    return { status: res.status, headers: res.headers, text: await res.text() };
  }

  /** The form token of a page the server rendered. */
  async function formToken(url = base, password = TOKEN): Promise<string> {
    const { text } = await page('/dashboard', url, password);
    return /name="csrf" value="([^"]+)"/.exec(text)![1]!;
  }

  /** Posts a form as a browser on the dashboard's page would: Basic, Origin of the page, the form token. */
  async function post(action: string, fields: Record<string, string>, options: { headers?: Record<string, string>;
    csrf?: string | null; url?: string; body?: string } = {}) {
    const url = options.url ?? base;
    const form = new URLSearchParams(fields);
    const csrf = options.csrf === undefined ? await formToken(url) : options.csrf;
    if (csrf !== null) form.set('csrf', csrf);
    const res = await fetch(`${url}/dashboard/${action}`, {
      method: 'POST', redirect: 'manual', body: options.body ?? form.toString(),
      headers: { authorization: basic(), origin: url, 'content-type': 'application/x-www-form-urlencoded', ...options.headers },
    });
    return { status: res.status, headers: res.headers, text: await res.text() };
  }

  const paused = async (name: string) => (await sql<{ paused: boolean }>('select paused from jobs.queue where name = $1', [name]))[0]!.paused;
  const stateOf = async (id: string) => (await sql<{ state: string }>(
    `select state from jobs.all where job_id = $1::bigint union all select status from jobs.job where job_id = $1::bigint`, [id]))[0]?.state;

  async function failed(queueName: string, n = 1): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push(await queue.publish(`${queueName}.job`, {}, { queue: queueName }));
    await sql('select jobs.fail($1::bigint[], $2)', [ids, 'boom']);
    return ids;
  }

  return { db, sql, queue, listen, base, readOnly, basic, page, formToken, post, paused, stateOf, failed };
}
