// GET /dashboard, the read-only HTML page, on a real server against a real
// PostgreSQL: its auth (HTTP Basic with the token as the password, bearer,
// signed requests), the counts of a known setup, escaping of user data, the
// ?queue filter and its 400s, the security headers, and that its one
// statement reads the failures through their index, not the whole history.
import { serve, type ServerType } from '@hono/node-server';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fill } from '../bench/fill.js';
import { createApp, signRequest } from '../src/http/index.js';
import { DASHBOARD_SQL } from '../src/http/dashboard.js';
import { createQueue, type TaskMap } from '../src/index.js';
import { countingDriver } from './support/counting-driver.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const TOKEN = 'dashboard-token-0123456789';
const SECRET = 'dashboard-hmac-secret-0123456789';
const tasks: TaskMap = { noop: async () => null };
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });

const servers: ServerType[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((done) => s.close(done))));
});
function listen(options: { token?: string; hmacSecret?: string }, q = queue): Promise<string> {
  return new Promise((done) => {
    servers.push(serve({ fetch: createApp({ queue: q, ...options }).fetch, port: 0, hostname: '127.0.0.1' },
                       (info) => done(`http://127.0.0.1:${info.port}`)));
  });
}
const base = await listen({ token: TOKEN, hmacSecret: SECRET });

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
async function get(path: string, headers: Record<string, string> = { authorization: basic('admin', TOKEN) }, url = base) {
  const res = await fetch(`${url}${path}`, { headers });
  const text = await res.text();
  let body: any;
  try { body = JSON.parse(text); } catch { body = undefined; }
  return { status: res.status, headers: res.headers, text, body };
}

/** The text of each cell of the table row whose first cell is `first`, tags dropped. */
function row(page: string, first: string): string[] | undefined {
  for (const tr of page.match(/<tr>[^]*?<\/tr>/g) ?? []) {
    const cells = [...tr.matchAll(/<td[^>]*>([^]*?)<\/td>/g)].map((m) => m[1]!.replace(/<[^>]*>/g, '').trim());
    if (cells[0] === first) return cells;
  }
  return undefined;
}

const XSS = '<script>alert(1)</script>';
let failedId = '';
let otherFailedId = '';

beforeAll(async () => {
  await sql(`select jobs.create_queue('dash', max_size => 100, max_running => 5, group_concurrency => 2, group_tiers => '{"pro": 4}')`);
  await sql(`select jobs.create_queue('other')`);
  await sql(`select jobs.create_queue('stopped')`);
  await sql(`select jobs.pause_queue('stopped')`);
  // One at a time, so each consume takes the job just published.
  const running = await queue.publish('dash.run', {}, { queue: 'dash' });
  await sql(`select * from jobs.consume(1, null, 'dash')`);
  failedId = await queue.publish('dash.fail', {}, { queue: 'dash', maxRetries: 0 });
  await sql(`select * from jobs.consume(1, null, 'dash')`);
  await sql(`select jobs.nack($1::bigint, $2::text)`, [failedId, `${XSS}\n    at secondLine (handler.js:1:1)`]);
  otherFailedId = await queue.publish('other.fail', {}, { queue: 'other', maxRetries: 0 });
  await sql(`select * from jobs.consume(1, null, 'other')`);
  await sql(`select jobs.nack($1::bigint, $2::text)`, [otherFailedId, 'x'.repeat(500)]);
  // Last claim of the queue: the next would hand the expired job out again.
  const expired = await queue.publish('dash.expire', {}, { queue: 'dash' });
  await sql(`select * from jobs.consume(1, null, 'dash')`);
  // Its lease passed without an ack (as when its drain was killed).
  await sql(`update jobs.job_queue set lease_until = now() - interval '1 second' where job_id = $1`, [expired]);
  // Pending: two, and the head of a serial key whose second job is blocked.
  await queue.publish('dash.work', { n: 1 }, { queue: 'dash' });
  await queue.publish('dash.work', { n: 2 }, { queue: 'dash' });
  await queue.publish('dash.serial', {}, { queue: 'dash', serialKey: 'k' });
  await queue.publish('dash.serial', {}, { queue: 'dash', serialKey: 'k' });
  await queue.publish('dash.later', {}, { queue: 'dash', delaySeconds: 3600 });
  await queue.publish('other.work', {}, { queue: 'other' });
  await sql(`select jobs.schedule('nightly-report', '0 3 * * *', 'dash.report', queue => 'dash', runner => 'drains')`);
  const states = await sql<{ state: string; n: number }>(
    `select state, count(*)::int as n from jobs.all where queue = 'dash' group by state order by state`);
  expect(Object.fromEntries(states.map((s) => [s.state, s.n])))
    .toEqual({ pending: 3, scheduled: 1, blocked: 1, running: 1, expired: 1, failure: 1 });
  expect(running).toBeTruthy();
});

describe('GET /dashboard: auth', () => {
  it('asks for HTTP Basic (401, WWW-Authenticate) without credentials, and with a wrong or malformed one', async () => {
    const cases: Record<string, string>[] = [
      {},
      { authorization: basic('admin', 'wrong-password-0123456789') },
      { authorization: basic('admin', TOKEN.slice(0, -1)) },
      { authorization: 'Basic %%%not-base64%%%' },
      { authorization: `Basic ${Buffer.from(TOKEN).toString('base64')}` }, // no colon: no password
      { authorization: 'Bearer wrong-token-0123456789' },
    ];
    for (const headers of cases) {
      const a = await get('/dashboard', headers);
      expect(a.status, JSON.stringify(headers)).toBe(401);
      expect(a.headers.get('www-authenticate')).toBe('Basic realm="pgdrain"');
      expect(a.body).toEqual({ error: { code: 'unauthorized', message: expect.any(String), field: expect.toBeOneOf(['authorization', null]) } });
      expect(a.text).not.toContain('dash.fail');
    }
    expect((await get('/dashboard', {})).body.error.message).toMatch(/any user name and the bearer token as the password/);
    // The token in the query string is no credential.
    expect((await get(`/dashboard?token=${TOKEN}`, {})).status).toBe(401);
  });

  it('answers 200 to Basic with the token as the password (any user name), to the bearer token and to a signed request', async () => {
    for (const headers of [{ authorization: basic('admin', TOKEN) }, { authorization: basic('', TOKEN) },
                           { authorization: basic('Zoë Ops', TOKEN) }, { authorization: `Bearer ${TOKEN}` },
                           await signRequest(SECRET, 'GET', '/dashboard', '')]) {
      const a = await get('/dashboard', headers);
      expect(a.status, JSON.stringify(headers)).toBe(200);
      expect(a.text).toContain('dash.fail');
    }
  });

  it('Basic is for the dashboard only: the API routes still refuse it', async () => {
    const a = await get('/stats');
    expect(a.status).toBe(401);
    expect(a.headers.get('www-authenticate')).toBe('Bearer realm="pgdrain"');
  });

  it('without a token (signed requests only), as every route: Basic is refused, a signed request gets the page', async () => {
    const signedOnly = await listen({ hmacSecret: SECRET });
    const refused = await get('/dashboard', { authorization: basic('admin', TOKEN) }, signedOnly);
    expect(refused.status).toBe(401);
    expect(refused.body.error.message).toMatch(/sign the request/);
    const ok = await get('/dashboard', await signRequest(SECRET, 'GET', '/dashboard', ''), signedOnly);
    expect(ok.status).toBe(200);
  });
});

describe('GET /dashboard: content', () => {
  it('shows each queue with its settings and the counts by state', async () => {
    const { status, text } = await get('/dashboard');
    expect(status).toBe(200);
    // queue, paused, max_size, max_running, per group, pending, scheduled, blocked, running, expired, failed, oldest due
    const dash = row(text, 'dash')!;
    expect(dash.slice(0, 11)).toEqual(['dash', 'no', '100', '5', '2 (pro 4)', '3', '1', '1', '1', '1', '1']);
    expect(dash[11]).toMatch(/^\d+ s$|^\d+ min \d+ s$/);
    expect(row(text, 'other')!.slice(0, 11)).toEqual(['other', 'no', '–', '–', '–', '1', '0', '0', '0', '0', '1']);
    expect(row(text, 'stopped')!.slice(0, 12)).toEqual(['stopped', 'paused', '–', '–', '–', '0', '0', '0', '0', '0', '0', '–']);
    expect(row(text, 'default')).toBeDefined();
  });

  it('lists the failures, newest first, with the error\'s first line escaped and cut to 200 characters', async () => {
    const { text } = await get('/dashboard');
    // id, task, queue, attempts, ended, error
    const failed = row(text, failedId)!;
    expect(failed.slice(0, 4)).toEqual([failedId, 'dash.fail', 'dash', '1']);
    expect(failed[4]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
    expect(failed[5]).toBe('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(text).not.toContain(XSS);
    expect(text).not.toMatch(/<script/i);
    expect(text).not.toContain('secondLine'); // the stack stays in jobs.job
    expect(row(text, otherFailedId)![5]).toBe(`${'x'.repeat(199)}…`);
    expect(text.indexOf(`>${otherFailedId}<`)).toBeLessThan(text.indexOf(`>${failedId}<`)); // newest first
  });

  it('lists the schedules, with the group their jobs carry', async () => {
    await sql(`select jobs.schedule('tenant-export', '0 4 * * *', 'dash.export', queue => 'dash', runner => 'drains',
                                    group_id => 'acme', group_tier => 'pro')`);
    try {
      const { text } = await get('/dashboard');
      // name, cron, task, queue, group, runner, next run, last run, last error
      const nightly = row(text, 'nightly-report')!;
      expect(nightly.slice(0, 6)).toEqual(['nightly-report', '0 3 * * *', 'dash.report', 'dash', '–', 'drains']);
      expect(nightly[6]).toMatch(/^\d{4}-\d\d-\d\d 03:00:00Z$/);
      expect(nightly[7]).toBe('–');
      expect(row(text, 'tenant-export')!.slice(0, 6)).toEqual(['tenant-export', '0 4 * * *', 'dash.export', 'dash', 'acme (tier pro)', 'drains']);
    } finally {
      await sql(`select jobs.unschedule('tenant-export')`);
    }
  });

  it('lists a recurrence rule schedule line by line, each line escaped, and says when its rule has ended', async () => {
    await sql(`select jobs.schedule('sprint', E'DTSTART;TZID=Europe/Paris:20300107T100000\\nRRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=2'
                                    '\\r\\nRDATE;TZID=Europe/Paris:20300114T100000', 'dash.sprint', queue => 'dash', now => '2030-01-01Z')`);
    try {
      const listed = async () => row((await get('/dashboard')).text, 'sprint')!;
      expect((await listed()).slice(2, 7)).toEqual(['dash.sprint', 'dash', '–', 'drains', '2030-01-07 09:00:00Z']);
      // Its lines as lines: a newline in HTML would run them into one.
      expect((await get('/dashboard')).text).toContain('<td><code>DTSTART;TZID=Europe/Paris:20300107T100000<br>'
        + 'RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=2<br>RDATE;TZID=Europe/Paris:20300114T100000</code> (Europe/Paris)</td>');
      await sql(`select jobs.publish_due_schedules('2030-01-07 09:00Z'); select jobs.publish_due_schedules('2030-01-21 09:00Z')`);
      expect((await listed())[6]).toBe('none: the rule ended');
      // A line written straight into the table is escaped as any value.
      await sql(`update jobs.recurring set cron = cron || E'\\n${XSS}' where name = 'sprint'`);
      expect((await get('/dashboard')).text).toContain('RDATE;TZID=Europe/Paris:20300114T100000<br>&lt;script&gt;alert(1)&lt;/script&gt;</code>');
    } finally {
      await sql(`select jobs.unschedule('sprint')`);
      // Its two ticks, due in 2030: once the real clock is past them they would count as pending in dash's row.
      await sql(`delete from jobs.job_queue where task = 'dash.sprint'`);
    }
  });

  it("says a schedule a tick stopped (its next tick past a tick's budget) has no next run, and to see its last error, in its row and above the tables; GET /stats names it, /metrics counts it, each in one statement", async () => {
    // Odd minutes on a 2-minute step (never any) with a COUNT counted from year 1: past
    // jobs.max_tick_steps() at its tick, so the claim stops it (sql/0023).
    const odd = Array.from({ length: 30 }, (_, i) => 2 * i + 1).join(',');
    await sql(`insert into jobs.recurring (name, cron, task, runner, queue, next_run_at, created_at, updated_at)
               values ('ancient', $1, 'dash.ancient', 'drains', 'dash', '2030-01-01Z', '2030-01-01Z', '2030-01-01Z')`,
              [`DTSTART:00010101T000000Z\nRRULE:FREQ=MINUTELY;INTERVAL=2;BYMINUTE=${odd};COUNT=1000`]);
    try {
      await sql(`select jobs.publish_due_schedules('2030-01-01T00:00:30Z')`);
      const { text } = await get('/dashboard');
      const stopped = row(text, 'ancient')!;
      expect(stopped[6]).toBe('none: stopped, see last error');
      // The command that restarts it, as the CLI says (stored: "until jobs.schedule is called for it again").
      expect(stopped[8]).toMatch(/^stopped until pgdrain schedule add is run for it again: cron: counting the occurrences of COUNT/);
      // And above the tables, where a glance at the page sees it.
      expect(text).toContain('<p class="error">stopped schedules (1): ancient; each until pgdrain schedule add is run for it again, '
        + 'its last error says why (Schedules, below).</p>');
      // As GET /stats says it, and /metrics counts it: each with the counts, in their one statement.
      const statements = new Map<string, number>();
      const url = await listen({ token: TOKEN }, createQueue({ driver: countingDriver(db.driver, statements), tasks }));
      const bearer = { authorization: `Bearer ${TOKEN}` };
      expect((await get('/stats', bearer, url)).body.stoppedSchedules).toEqual(['ancient']);
      // Its HELP says how to restart one to each caller, not only SQL's jobs.schedule (before: "until jobs.schedule is called").
      expect((await get('/metrics', bearer, url)).text.split('\n')).toEqual(expect.arrayContaining(['pgdrain_schedules_stopped 1',
        '# HELP pgdrain_schedules_stopped Schedules a tick stopped (their next tick not computable): none fires until it is '
        + 'scheduled again with a rule it can compute (the CLI: pgdrain schedule add; TS: schedule(db, spec); SQL: jobs.schedule); '
        + 'jobs.stopped_schedules lists them.']));
      expect([...statements.values()].reduce((a, b) => a + b, 0)).toBe(2); // before: a second for /stats' stopped schedules
    } finally {
      await sql(`select jobs.unschedule('ancient')`);
      await sql(`delete from jobs.job_queue where task = 'dash.ancient'`); // its due tick, published as it stopped
    }
  });

  it('is read-only and refreshes itself: no form, no script, a meta refresh', async () => {
    const { text } = await get('/dashboard');
    expect(text).toContain('<meta http-equiv="refresh" content="10">');
    expect(text).not.toMatch(/<form|<script|<button|<input|method=/i);
  });

  it('sends headers that forbid scripts, framing, sniffing, caching and referrers', async () => {
    for (const path of ['/dashboard', '/dashboard?queue=nope']) {
      const { headers } = await get(path);
      expect(headers.get('content-security-policy')).toBe("default-src 'none'; style-src 'unsafe-inline'");
      expect(headers.get('x-content-type-options')).toBe('nosniff');
      expect(headers.get('referrer-policy')).toBe('no-referrer');
      expect(headers.get('cache-control')).toBe('no-store');
      expect(headers.get('x-frame-options')).toBe('DENY');
    }
    expect((await get('/dashboard')).headers.get('content-type')).toMatch(/^text\/html; charset=utf-8$/i);
  });
});

describe('GET /dashboard?queue=NAME', () => {
  it('shows that queue only: its row, its failures, its schedules', async () => {
    const { status, text } = await get('/dashboard?queue=dash');
    expect(status).toBe(200);
    expect(row(text, 'dash')!.slice(0, 6)).toEqual(['dash', 'no', '100', '5', '2 (pro 4)', '3']);
    expect(row(text, 'other')).toBeUndefined();
    expect(row(text, 'default')).toBeUndefined();
    expect(row(text, failedId)).toBeDefined();
    expect(row(text, otherFailedId)).toBeUndefined();
    expect(row(text, 'nightly-report')).toBeDefined();
    const other = await get('/dashboard?queue=other');
    expect(row(other.text, 'other')).toBeDefined();
    expect(row(other.text, failedId)).toBeUndefined();
    expect(row(other.text, 'nightly-report')).toBeUndefined();
  });

  it('answers 400 naming the field for an unknown or malformed queue, a repeated one, or another parameter', async () => {
    const cases: [string, string, RegExp][] = [
      // Before: "create it with jobs.create_queue", the SQL call, to a reader with a browser.
      ['?queue=nope', 'queue', /^queue: no queue named "nope"; create it with pgdrain queue create nope$/],
      ['?queue=', 'queue', /^queue: must be a non-empty queue name/],
      [`?queue=${encodeURIComponent('<b>x</b>')}`, 'queue', /^queue: must be dot-separated words/],
      ['?queue=dash&queue=other', 'queue', /^queue: must be given once/],
      ['?limit=5', 'limit', /^limit: unknown query parameter/],
    ];
    for (const [query, field, message] of cases) {
      const a = await get(`/dashboard${query}`);
      expect(a.status, query).toBe(400);
      expect(a.body).toEqual({ error: { code: 'invalid_argument', message: expect.stringMatching(message), field } });
    }
  });
});

describe('what a dashboard page reads', () => {
  it('one statement that reads the failures through job_failure_idx, never the whole history', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      // 20,000 successes in the default queue's history.
      await fill(client, 20_000);
      for (let batch = 0; batch < 40; batch++) await client.query('select jobs.ack(array(select job_id from jobs.consume(500)))');
      expect((await sql<{ n: number }>(`select count(*)::int as n from jobs.job where status = 'success'`))[0]!.n).toBe(20_000);
      await client.query('analyze jobs.job_queue, jobs.job');
      await client.query(`prepare dashboard(text) as ${DASHBOARD_SQL}`);
      for (const param of ['null', `'dash'`]) {
        const { rows } = await client.query<{ 'QUERY PLAN': string }>(`explain execute dashboard(${param})`);
        const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
        expect(plan).not.toMatch(/Seq Scan on job( |$)/m);
        expect(plan).toMatch(/Index Scan Backward using job_failure_idx on job/);
      }
    } finally {
      await client.end();
    }
    // The successes are not counted.
    // The last cell: its expire_in (none).
    expect(row((await get('/dashboard')).text, 'default')).toEqual(['default', 'no', '–', '–', '–', '0', '0', '0', '0', '0', '0', '–', '–']);
  });
});

describe('GET /dashboard: edges (review R3)', () => {
  it('lists the newest failures by ended_at, then job id as a number, when many ended at once', async () => {
    await sql(`select jobs.create_queue('ties')`);
    // Ids that cross a power of ten: as text, 10009 sorts before 9999.
    const { last } = (await sql<{ last: string }>(`select last_value::text as last from jobs.job_queue_job_id_seq`))[0]!;
    await sql(`select setval('jobs.job_queue_job_id_seq', $1::bigint)`, [10 ** String(Number(last) + 100).length - 31]);
    const ids = (await sql<{ id: string }>(`select jobs.publish('ties.job', queue => 'ties')::text as id from generate_series(1, 60)`))
      .map((r) => r.id);
    expect(await sql<{ n: number }>('select jobs.fail($1::bigint[], $2) as n', [ids, 'all at once'])).toEqual([{ n: 60 }]);
    const { status, text } = await get('/dashboard?queue=ties');
    expect(status).toBe(200);
    const listed = [...text.matchAll(/<tr><td class="n">(\d+)<\/td><td>ties\.job<\/td>/g)].map((m) => m[1]);
    expect(listed).toEqual(ids.slice(10).reverse()); // 10029 … 9980, or past another power of ten
  });

  it('shows a failure dated at infinity as the database wrote it, and names a deleted queue without a link', async () => {
    await sql(`select jobs.create_queue('gone')`);
    const id = await queue.publish('gone.job', {}, { queue: 'gone' });
    // jobs.fail refuses now => 'infinity' (PD007); a row written so by hand (or before) still shows.
    await sql(`select jobs.fail(array[$1::bigint], 'the last one')`, [id]);
    await sql(`update jobs.job set ended_at = 'infinity' where job_id = $1`, [id]);
    await sql(`select jobs.delete_queue('gone')`);
    try {
      const { status, text } = await get('/dashboard');
      expect(status, text).toBe(200);
      expect(row(text, id)!.slice(2, 5)).toEqual(['gone', '0', 'infinity']); // failed waiting: no attempt
      expect(text).not.toContain('?queue=gone');
      expect(text).toContain('?queue=dash');
    } finally {
      await sql('delete from jobs.job where job_id = $1', [id]);
    }
  });

  it('answers at /dashboard/ as at /dashboard, Basic included', async () => {
    const { status, text } = await get('/dashboard/');
    expect(status).toBe(200);
    expect(row(text, 'dash')).toBeDefined();
  });

  it('refuses a token that is not visible ASCII: no client could send it as a bearer', () => {
    expect(() => createApp({ queue, token: 'tökén_0123456789abcdef' })).toThrow(/token.*visible ASCII/);
  });
});
