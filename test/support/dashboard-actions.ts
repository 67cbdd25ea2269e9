// The dashboard's actions on a real server against a real PostgreSQL: servers
// of createApp with dashboardActions, and requests as a browser on the page
// sends them (Basic, its Origin, its form token). For the dashboard tests.
import { serve, type ServerType } from '@hono/node-server';
import { afterAll } from 'vitest';
import { createApp } from '../../src/http/index.js';
import { formBinding, type DashboardAction } from '../../src/http/dashboard-actions.js';
import { DashboardSigner } from '../../src/http/dashboard-guard.js';
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

  /**
   * The form token of the page's form for action with fields (besides back,
   * and cancel's typed job): its hidden fields are those. Throws when the page
   * the server rendered (at path) has no such form.
   */
  async function formToken(action: string, fields: Record<string, string>, url = base, password = TOKEN,
                           path = '/dashboard'): Promise<string> {
    const { text } = await page(path, url, password);
    const { back: _, ...want } = fields;
    if (action === 'cancel') delete want.job;
    for (const [, name, inner] of text.matchAll(/<form method="post" action="(?:dashboard\/)?(\w+)">([^]*?)<\/form>/g)) {
      const hidden = Object.fromEntries([...inner!.matchAll(/<input type="hidden" name="(\w+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!]));
      const { csrf, back: __, ...given } = hidden;
      if (name === action && JSON.stringify(Object.entries(given).sort()) === JSON.stringify(Object.entries(want).sort())) return csrf!;
    }
    throw new Error(`the page has no ${action} form for ${JSON.stringify(fields)}`);
  }

  /** The token this server would give the form (action, fields), whether or not a page shows it (the token keys it). */
  function minted(action: DashboardAction, fields: Record<string, string>): Promise<string> {
    const form = new URLSearchParams(fields);
    return new DashboardSigner(TOKEN).formToken(formBinding(action, (name) => form.getAll(name)));
  }

  /** Posts a form as a browser on the dashboard's page would: Basic, Origin of the page, the form's token from the page. */
  async function post(action: string, fields: Record<string, string>, options: { headers?: Record<string, string>;
    csrf?: string | null; url?: string; body?: string } = {}) {
    const url = options.url ?? base;
    const form = new URLSearchParams(fields);
    const csrf = options.csrf === undefined ? await formToken(action, fields, url) : options.csrf;
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

  return { db, sql, queue, listen, base, readOnly, basic, page, formToken, minted, post, paused, stateOf, failed };
}
