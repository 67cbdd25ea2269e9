// The dashboard's actions (createApp's dashboardActions, serve's
// --dashboard-actions) on a real server against a real PostgreSQL: each form
// does what it says (the job's or queue's state after), a POST without the
// form token, with another server's or an expired one, or from another
// origin is refused with 403 and changes nothing, bad fields get a clear
// error page, and the read-only dashboard stays read-only.
import { serve, type ServerType } from '@hono/node-server';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createApp, signRequest } from '../src/http/index.js';
import { DashboardSigner, FORM_TOKEN_HOURS } from '../src/http/dashboard-guard.js';
import { createQueue, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const TOKEN = 'dashboard-actions-token-0123456789';
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
const SECRET = 'dashboard-actions-hmac-secret-0123456789';
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

await sql(`select jobs.create_queue('acts')`);

describe('the page with actions', () => {
  it('has a form token, pause and redrive buttons and the cancel form; no self-refresh; forms may post to itself only', async () => {
    const [id] = await failed('acts');
    const { status, headers, text } = await page();
    expect(status).toBe(200);
    expect(text).toMatch(/<form method="post" action="dashboard\/pause"><input type="hidden" name="csrf" value="\d+\.[0-9a-f]{64}">/);
    expect(text).toContain('<input type="hidden" name="queue" value="acts">');
    expect(text).toContain(`<input type="hidden" name="job" value="${id}">`);
    expect(text).toMatch(/<button>redrive \d+ failed<\/button>/);
    expect(text).toMatch(/action="dashboard\/cancel">[^]*<input name="job" required/);
    expect(text).not.toContain('http-equiv="refresh"');
    expect(text).not.toMatch(/<script/i);
    expect(headers.get('content-security-policy')).toBe("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
    // no-referrer would make a browser send "Origin: null" with the form.
    expect(headers.get('referrer-policy')).toBe('same-origin');
    // At /dashboard/ the forms post to the same routes.
    expect((await page('/dashboard/')).text).toContain('action="pause"');
    await sql('select jobs.redrive(job_ids => $1::bigint[])', [[id]]);
  });

  it('the read-only dashboard has none, and refuses an action (404) without changing anything', async () => {
    const { text } = await page('/dashboard', readOnly);
    expect(text).not.toMatch(/<form|csrf/);
    const a = await post('pause', { queue: 'acts' }, { url: readOnly, csrf: 'x' });
    expect(a.status).toBe(404);
    expect(a.text).toContain('dashboard_read_only');
    expect(a.text).toContain('--dashboard-actions');
    expect(await paused('acts')).toBe(false);
  });

  it('dashboardActions needs a token, and must be a boolean', () => {
    expect(() => createApp({ queue, hmacSecret: 'dashboard-hmac-secret-0123456789', dashboardActions: true }))
      .toThrow(/^dashboardActions: needs a token/);
    expect(() => createApp({ queue, token: TOKEN, dashboardActions: 'yes' as unknown as boolean })).toThrow(/^dashboardActions: must be a boolean/);
  });
});

describe('each action does what it says, then 303 back to the page with a note', () => {
  it('pause and resume a queue', async () => {
    const a = await post('pause', { queue: 'acts', back: 'acts' });
    expect(a.status).toBe(303);
    const location = a.headers.get('location')!;
    expect(location).toMatch(/^\.\/\?queue=acts&note=Queue%20acts%20paused[^&]*&sig=[0-9a-f]{64}$/);
    expect(await paused('acts')).toBe(true);
    // The redirect, followed as a browser does (from /dashboard/pause): the page of that queue with the note.
    const back = await page(new URL(location, `${base}/dashboard/pause`).pathname + new URL(location, base).search);
    expect(back.status).toBe(200);
    expect(back.text).toMatch(/<p class="note">Queue acts paused: drains claim none of its jobs until it is resumed\.<\/p>/);
    expect(back.text).toContain('<button>resume</button>');
    const r = await post('resume', { queue: 'acts' });
    expect(r.status).toBe(303);
    expect(r.headers.get('location')).toMatch(/^\.\/\?note=Queue%20acts%20resumed\.&sig=/);
    expect(await paused('acts')).toBe(false);
  });

  it('redrive one failed job, then every failed job of a queue', async () => {
    const [one, ...rest] = await failed('acts', 3);
    const a = await post('redrive', { job: one! });
    expect(a.status).toBe(303);
    expect(decodeURIComponent(a.headers.get('location')!)).toContain(`Job ${one} redriven: it runs again.`);
    expect(await stateOf(one!)).toBe('pending');
    expect(await stateOf(rest[0]!)).toBe('failure');
    const b = await post('redrive', { queue: 'acts' });
    expect(b.status).toBe(303);
    expect(decodeURIComponent(b.headers.get('location')!)).toContain('Queue acts: 2 failed jobs redriven.');
    expect(await Promise.all(rest.map(stateOf))).toEqual(['pending', 'pending']);
    await sql('select jobs.cancel_bulk($1::bigint[], null)', [[one, ...rest]]);
  });

  it('a queue\'s redrive puts back at most limits.dashboardRedriveRows a click, and says how many are left', async () => {
    const small = await listen({ token: TOKEN, dashboardActions: true, limits: { dashboardRedriveRows: 2 } });
    await sql(`select jobs.create_queue('acts.many')`);
    const ids = await failed('acts.many', 5);
    // The button says what a click does.
    expect((await page('/dashboard?queue=acts.many', small)).text).toContain('<button>redrive 2 of 5 failed</button>');
    const click = async () => {
      const a = await post('redrive', { queue: 'acts.many' }, { url: small });
      expect(a.status).toBe(303);
      return decodeURIComponent(a.headers.get('location')!);
    };
    expect(await click()).toContain('Queue acts.many: 2 failed jobs redriven, 3 left: press again (one click redrives at most 2).');
    expect(await Promise.all(ids.map(stateOf))).toEqual(['pending', 'pending', 'failure', 'failure', 'failure']);
    expect(await click()).toContain('Queue acts.many: 2 failed jobs redriven, 1 left: press again');
    expect((await page('/dashboard?queue=acts.many', small)).text).toContain('<button>redrive 1 failed</button>');
    expect(await click()).toContain('Queue acts.many: 1 failed job redriven.&sig=');
    expect(await click()).toContain('Queue acts.many: no failed job to redrive.');
    await sql('select jobs.cancel_bulk($1::bigint[], null)', [ids]);
  });

  it('a queue\'s redrive says which failed jobs it leaves as they are (a waiting job holds their dedupe key)', async () => {
    await sql(`select jobs.create_queue('acts.keyed')`);
    const held = await queue.publish('acts.keyed.job', {}, { queue: 'acts.keyed', dedupeKey: 'k1' });
    await sql('select jobs.fail($1::bigint[], $2)', [[held], 'boom']);
    const [free] = await failed('acts.keyed');
    const waiting = await queue.publish('acts.keyed.job', {}, { queue: 'acts.keyed', dedupeKey: 'k1' });
    const a = await post('redrive', { queue: 'acts.keyed' });
    expect(a.status).toBe(303);
    expect(decodeURIComponent(a.headers.get('location')!)).toContain('Queue acts.keyed: 1 failed job redriven; 1 left as they are: '
      + 'a waiting job holds their dedupe key');
    expect(await stateOf(free!)).toBe('pending');
    expect(await stateOf(held)).toBe('failure');
    await sql('select jobs.cancel_bulk($1::bigint[], null)', [[free, waiting]]);
  });

  it('cancel a waiting job (its error says from where), and ask a running one to stop', async () => {
    const waiting = await queue.publish('acts.wait', {}, { queue: 'acts' });
    const a = await post('cancel', { job: waiting });
    expect(a.status).toBe(303);
    expect(decodeURIComponent(a.headers.get('location')!)).toContain(`Job ${waiting} cancelled.`);
    expect(await sql('select status, error from jobs.job where job_id = $1', [waiting]))
      .toEqual([{ status: 'cancelled', error: 'cancelled: from the dashboard' }]);
    // A queue of its own, so the consume takes this job.
    await sql(`select jobs.create_queue('acts.running')`);
    const running = await queue.publish('acts.run', {}, { queue: 'acts.running' });
    expect(await sql(`select job_id::text as id from jobs.consume(1, null, 'acts.running')`)).toEqual([{ id: running }]);
    const b = await post('cancel', { job: running });
    expect(b.status).toBe(303);
    expect(decodeURIComponent(b.headers.get('location')!)).toContain(`Job ${running} is running: asked to stop.`);
    expect(await sql('select cancel_requested_at is not null as asked from jobs.job_queue where job_id = $1', [running]))
      .toEqual([{ asked: true }]);
    await sql('select jobs.ack($1::bigint)', [running]);
  });
});

describe('cross-site requests are refused (403) and change nothing', () => {
  it('without the form token, with a wrong, another server\'s, an expired or a repeated one', async () => {
    const otherToken = 'another-servers-token-0123456789';
    const other = await listen({ token: otherToken, dashboardActions: true });
    const expired = await new DashboardSigner(TOKEN).formToken(Date.now() - (FORM_TOKEN_HOURS * 3600 + 60) * 1000);
    const good = await formToken();
    const cases: [string | null, RegExp, string?][] = [
      [null, /csrf: missing form token/],
      ['', /csrf: missing form token/],
      ['1733356800.' + '0'.repeat(64), /csrf: invalid form token/],
      [good.replace(/.$/, (d) => (d === '0' ? '1' : '0')), /csrf: invalid form token/],
      [await formToken(other, otherToken), /csrf: invalid form token/],
      [expired, /csrf: form token expired \(the page is more than 12 h old\)/],
      [good, /csrf: invalid form token/, `queue=acts&csrf=${good}&csrf=${good}`],
    ];
    for (const [csrf, message, body] of cases) {
      const a = await post('pause', { queue: 'acts' }, body === undefined ? { csrf } : { csrf, body });
      expect(a.status, String(csrf)).toBe(403);
      expect(a.headers.get('content-type')).toMatch(/^text\/html/);
      expect(a.text).toMatch(message);
      expect(a.text).toContain('Nothing was changed.');
      expect(await paused('acts')).toBe(false);
    }
  });

  it('from another origin: Origin or Referer of another site, Origin null, neither, or Sec-Fetch-Site cross-site', async () => {
    const [id] = await failed('acts');
    const cases: [Record<string, string>, RegExp][] = [
      [{ origin: 'https://evil.example' }, /origin: &quot;https:\/\/evil.example&quot; is another site/],
      [{ origin: base.replace('127.0.0.1', '127.0.0.2') }, /origin: .* is another site/],
      [{ origin: 'null' }, /origin: &quot;null&quot; is not this server&#39;s page/],
      [{ origin: '', referer: 'https://evil.example/page' }, /origin: &quot;&quot; is not this server/],
      [{ 'sec-fetch-site': 'cross-site' }, /sec-fetch-site: cross-site: the browser says this form came from another site/],
      [{ 'sec-fetch-site': 'same-site' }, /sec-fetch-site: same-site/],
    ];
    for (const [headers, message] of cases) {
      const a = await post('redrive', { job: id! }, { headers });
      expect(a.status, JSON.stringify(headers)).toBe(403);
      expect(a.text).toMatch(message);
      expect(await stateOf(id!)).toBe('failure');
    }
    // No Origin: the Referer decides.
    const noOrigin = async (headers: Record<string, string>) => {
      const form = new URLSearchParams({ job: id!, csrf: await formToken() });
      const res = await fetch(`${base}/dashboard/redrive`, { method: 'POST', redirect: 'manual', body: form,
        headers: { authorization: basic(), ...headers } });
      return { status: res.status, text: await res.text() };
    };
    const neither = await noOrigin({});
    expect(neither.status).toBe(403);
    expect(neither.text).toMatch(/origin: missing: a browser sends Origin with a form/);
    const elsewhere = await noOrigin({ referer: 'https://evil.example/page' });
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.text).toMatch(/referer: &quot;https:\/\/evil.example\/page&quot; is another site/);
    expect(await stateOf(id!)).toBe('failure');
    expect((await noOrigin({ referer: `${base}/dashboard` })).status).toBe(303);
    expect(await stateOf(id!)).toBe('pending');
    await sql('select jobs.cancel($1::bigint)', [id]);
  });

  it('behind a proxy: the Origin may name the host the proxy was asked for (X-Forwarded-Host)', async () => {
    const headers = { origin: 'https://jobs.example.com', 'x-forwarded-host': 'jobs.example.com' };
    expect((await post('pause', { queue: 'acts' }, { headers })).status).toBe(303);
    expect(await paused('acts')).toBe(true);
    expect((await post('resume', { queue: 'acts' }, { headers: { ...headers, origin: 'https://evil.example' } })).status).toBe(403);
    expect(await paused('acts')).toBe(true);
    expect((await post('resume', { queue: 'acts' })).status).toBe(303);
  });

  it('behind a proxy: a default port (80, 443) named on either side is the same host', async () => {
    const cases: Record<string, string>[] = [
      { origin: 'https://jobs.example.com', 'x-forwarded-host': 'jobs.example.com:443' },
      { origin: 'http://jobs.example.com', 'x-forwarded-host': 'Jobs.Example.com:80' },
      { origin: 'https://jobs.example.com:443', 'x-forwarded-host': 'jobs.example.com' },
      { origin: 'http://jobs.example.com:80', 'x-forwarded-host': 'jobs.example.com, proxy.internal' },
    ];
    for (const headers of cases) {
      expect((await post('pause', { queue: 'acts' }, { headers })).status, JSON.stringify(headers)).toBe(303);
      expect(await paused('acts')).toBe(true);
      expect((await post('resume', { queue: 'acts' })).status).toBe(303);
    }
    // A Host header with a default port (fetch cannot set Host: node:http can).
    const viaHost = (origin: string) => new Promise<number>((done, fail) => {
      const body = `queue=acts&csrf=${encodeURIComponent(csrf)}`;
      const req = request(`${base}/dashboard/pause`, { method: 'POST', headers: { host: 'jobs.example.com:443', origin,
        authorization: basic(), 'content-type': 'application/x-www-form-urlencoded', 'content-length': body.length } },
      (res) => { res.resume(); done(res.statusCode!); });
      req.on('error', fail);
      req.end(body);
    });
    const csrf = await formToken();
    expect(await viaHost('https://evil.example')).toBe(403);
    expect(await paused('acts')).toBe(false);
    expect(await viaHost('https://jobs.example.com')).toBe(303);
    expect(await paused('acts')).toBe(true);
    expect((await post('resume', { queue: 'acts' })).status).toBe(303);
    // Another port is another origin.
    const other = await post('pause', { queue: 'acts' }, { headers: { origin: 'https://jobs.example.com:8443', 'x-forwarded-host': 'jobs.example.com:443' } });
    expect(other.status).toBe(403);
    expect(await paused('acts')).toBe(false);
  });

  it('without credentials, or a wrong password: 401 asking for Basic, nothing changed', async () => {
    for (const authorization of [undefined, basic('wrong-password-0123456789')]) {
      const res = await fetch(`${base}/dashboard/pause`, { method: 'POST', redirect: 'manual',
        body: new URLSearchParams({ queue: 'acts', csrf: await formToken() }),
        headers: { origin: base, ...(authorization ? { authorization } : {}) } });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Basic realm="pgdrain"');
      expect(await res.text()).toContain('401 unauthorized');
    }
    expect(await paused('acts')).toBe(false);
  });
});

describe('a signed request (PGDRAIN_HMAC_SECRET: schedulers, pg_net) takes no action: only the token does', () => {
  it('its page has no forms and no form token; its POST, even with a form token and this Origin, is a 403 naming the rule', async () => {
    const signedPage = await fetch(`${base}/dashboard`, { headers: await signRequest(SECRET, 'GET', '/dashboard', '') });
    expect(signedPage.status).toBe(200);
    const text = await signedPage.text();
    expect(text).toContain('<h1>pgdrain</h1>');
    expect(text).not.toMatch(/<form|csrf/);
    const body = new URLSearchParams({ queue: 'acts', csrf: await formToken() }).toString();
    const res = await fetch(`${base}/dashboard/pause`, { method: 'POST', redirect: 'manual', body,
      headers: { origin: base, 'content-type': 'application/x-www-form-urlencoded',
                 ...await signRequest(SECRET, 'POST', '/dashboard/pause', body) } });
    expect(res.status).toBe(403);
    expect(await res.text()).toMatch(/403 forbidden<\/strong>: authorization: a signed request cannot take dashboard actions .*log in with the token/);
    expect(await paused('acts')).toBe(false);
    // The token as a bearer takes them, as Basic does.
    const bearer = await post('pause', { queue: 'acts' }, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(bearer.status).toBe(303);
    expect(await paused('acts')).toBe(true);
    expect((await post('resume', { queue: 'acts' })).status).toBe(303);
  });
});

describe('bad input: a clear error page naming the field, nothing changed', () => {
  it('a malformed or unknown job id, an unknown queue, a missing or extra field, a bad back, a wrong body', async () => {
    const cases: [string, Record<string, string>, number, RegExp, { body?: string; headers?: Record<string, string> }?][] = [
      ['cancel', { job: 'abc' }, 400, /400 invalid_argument<\/strong>: job: must be a job id/],
      ['cancel', { job: '-1' }, 400, /job: must be a job id/],
      ['cancel', {}, 400, /job: missing: give the id of a waiting or running job/],
      ['cancel', { job: '987654321' }, 404, /job: no waiting or running job 987654321 \(it has ended, or never existed\)/],
      ['redrive', { job: '987654321' }, 404, /job: job 987654321 was not redriven: it is not a failed job/],
      ['redrive', { job: '1', queue: 'acts' }, 400, /job: give job \(one failed job\) or queue \(all its failed jobs\), not both/],
      ['redrive', {}, 400, /job: give job .* not both or neither/],
      ['pause', { queue: 'nope' }, 404, /queue: no queue named &quot;nope&quot;/],
      ['pause', { queue: '<b>x</b>' }, 400, /queue: must be dot-separated words/],
      ['pause', { queue: 'acts', job: '1' }, 400, /job: unknown field \(the pause form sends csrf, back, queue\)/],
      ['pause', { queue: 'acts', '<i>': '1' }, 400, /&lt;i&gt;: unknown field/],
      ['pause', { queue: 'acts', back: 'no such/page' }, 400, /back: must be dot-separated words/],
      ['pause', { queue: 'acts' }, 400, /content-type: must be application\/x-www-form-urlencoded/,
       { headers: { 'content-type': 'application/json' } }],
      ['pause', { queue: 'acts' }, 413, /body: must be at most 4096 bytes/, { body: `queue=acts&x=${'y'.repeat(5000)}` }],
    ];
    for (const [action, fields, status, message, options] of cases) {
      const a = await post(action, fields, options);
      expect(a.status, `${action} ${JSON.stringify(fields)}`).toBe(status);
      expect(a.headers.get('content-type')).toMatch(/^text\/html/);
      expect(a.text).toMatch(message);
      expect(a.text).toContain('Nothing was changed. <a href="./">Back to the dashboard</a>');
      expect(a.text).not.toMatch(/<i>|<b>/);
    }
    expect(await paused('acts')).toBe(false);
  });

  it('a note in the page\'s query string shows only with the server\'s signature; else the page comes without it', async () => {
    // A forged note, a stale link (the token rotated: another server's signature), a bare note, a note
    // on the read-only dashboard: the page, without the note.
    const otherSig = await new DashboardSigner('another-servers-token-0123456789').signNote('Queue acts paused.');
    const cases: [string, string][] = [
      [base, `note=${encodeURIComponent('Your token leaked: call 555')}&sig=${'0'.repeat(64)}`],
      [base, `note=${encodeURIComponent('Queue acts paused.')}&sig=${otherSig}`],
      [base, 'note=hello'],
      [base, `sig=${'0'.repeat(64)}`],
      [base, `queue=acts&note=a&note=b&sig=${'0'.repeat(64)}`],
      [readOnly, `note=${encodeURIComponent('Queue acts paused.')}&sig=${await new DashboardSigner(TOKEN).signNote('Queue acts paused.')}`],
    ];
    for (const [url, query] of cases) {
      const res = await fetch(`${url}/dashboard?${query}`, { headers: { authorization: basic() } });
      expect(res.status, query).toBe(200);
      const text = await res.text();
      expect(text).toContain('<h1>pgdrain</h1>');
      expect(/class="note"|token leaked|paused\.|hello/.exec(text)?.[0], query).toBeUndefined();
    }
    // The server's own note shows.
    const note = 'Queue acts paused.';
    const own = await page(`/dashboard?note=${encodeURIComponent(note)}&sig=${await new DashboardSigner(TOKEN).signNote(note)}`);
    expect(own.text).toContain('<p class="note">Queue acts paused.</p>');
  });
});

describe('pgdrain serve --dashboard-actions', () => {
  const CLI = resolve('dist/cli.mjs');
  function start(env: Record<string, string>) {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--dashboard-actions'],
      { env: { ...process.env, DATABASE_URL: db.url, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const url = new Promise<string>((done, fail) => {
      child.stderr.on('data', (c) => {
        stderr += c;
        const m = /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
        if (m) done(m[1]!);
      });
      void exited.then((code) => fail(new Error(`serve exited ${code}: ${stderr}`)));
    });
    return { child, url, exited, stderr: () => stderr };
  }

  it('serves the page with its forms, whose actions are taken', async () => {
    const server = start({ PGDRAIN_TOKEN: TOKEN });
    try {
      const url = await server.url;
      expect((await page('/dashboard', url)).text).toContain('action="dashboard/pause"');
      expect((await post('pause', { queue: 'acts' }, { url })).status).toBe(303);
      expect(await paused('acts')).toBe(true);
      expect((await post('resume', { queue: 'acts' }, { url })).status).toBe(303);
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });

  it('needs PGDRAIN_TOKEN: with only PGDRAIN_HMAC_SECRET it exits 2 naming the flag', async () => {
    const server = start({ PGDRAIN_TOKEN: '', PGDRAIN_HMAC_SECRET: 'dashboard-hmac-secret-0123456789' });
    server.url.catch(() => {});
    expect(await server.exited).toBe(2);
    expect(server.stderr()).toBe('pgdrain: --dashboard-actions: needs PGDRAIN_TOKEN: a browser logs in to the dashboard with it, '
      + 'and it keys the forms\' tokens\n');
  });
});
