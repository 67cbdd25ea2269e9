// The dashboard's actions (createApp's dashboardActions, serve's
// --dashboard-actions) on a real server against a real PostgreSQL: each form
// does what it says (the job's or queue's state after), a POST without the
// form token, with another server's or an expired one, or from another
// origin is refused with 403 and changes nothing, bad fields get a clear
// error page, and the read-only dashboard stays read-only.
import { describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { formBinding, type DashboardAction } from '../src/http/dashboard-actions.js';
import { DashboardSigner, FORM_TOKEN_HOURS } from '../src/http/dashboard-guard.js';
import { dashboardRig, TOKEN } from './support/dashboard-actions.js';
import { startServe } from './support/serve-process.js';

const { db, sql, queue, listen, base, readOnly, basic, page, formToken, minted, post, paused, stateOf, failed } = await dashboardRig();

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
    // The pause form of queue acts, rendered 12 h and a minute ago.
    const expired = await new DashboardSigner(TOKEN).formToken(formBinding('pause', () => ['acts']),
                                                               Date.now() - (FORM_TOKEN_HOURS * 3600 + 60) * 1000);
    const good = await formToken('pause', { queue: 'acts' });
    const cases: [string | null, RegExp, string?][] = [
      [null, /csrf: missing form token/],
      ['', /csrf: missing form token/],
      ['1733356800.' + '0'.repeat(64), /csrf: invalid form token/],
      [good.replace(/.$/, (d) => (d === '0' ? '1' : '0')), /csrf: invalid form token/],
      [await formToken('pause', { queue: 'acts' }, other, otherToken), /csrf: invalid form token/],
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
      const form = new URLSearchParams({ job: id!, csrf: await formToken('redrive', { job: id! }) });
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

  it('without credentials, or a wrong password: 401 asking for Basic, nothing changed', async () => {
    for (const authorization of [undefined, basic('wrong-password-0123456789')]) {
      const res = await fetch(`${base}/dashboard/pause`, { method: 'POST', redirect: 'manual',
        body: new URLSearchParams({ queue: 'acts', csrf: await formToken('pause', { queue: 'acts' }) }),
        headers: { origin: base, ...(authorization ? { authorization } : {}) } });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Basic realm="pgdrain"');
      expect(await res.text()).toContain('401 unauthorized');
    }
    expect(await paused('acts')).toBe(false);
  });
});

describe('bad input: a clear error page naming the field, nothing changed', () => {
  it('a malformed or unknown job id, an unknown queue, a missing or extra field, a bad back, a wrong body', async () => {
    // Forms the page does not render, with the token a form of theirs would carry (PGDRAIN_TOKEN keys it).
    const cases: [DashboardAction, Record<string, string>, number, RegExp, { body?: string; headers?: Record<string, string> }?][] = [
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
      const a = await post(action, fields, { csrf: await minted(action, fields), ...options });
      expect(a.status, `${action} ${JSON.stringify(fields)}`).toBe(status);
      expect(a.headers.get('content-type')).toMatch(/^text\/html/);
      expect(a.text).toMatch(message);
      expect(a.text).toContain('Nothing was changed. <a href="./">Back to the dashboard</a>');
      expect(a.text).not.toMatch(/<i>|<b>/);
    }
    expect(await paused('acts')).toBe(false);
  });

});

describe('pgdrain serve --dashboard-actions', () => {
  const start = (env: Record<string, string>) => startServe(db.url, ['--dashboard-actions'], env);

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

  it('--dashboard-redrive-rows N bounds a queue\'s redrive per click', async () => {
    await sql(`select jobs.create_queue('acts.rows')`);
    const ids = await failed('acts.rows', 3);
    const server = startServe(db.url, ['--dashboard-actions', '--dashboard-redrive-rows', '2'], { PGDRAIN_TOKEN: TOKEN });
    try {
      const url = await server.url;
      // Before: an unknown option, the server exited 1 (as 10000 a click, the button said "redrive 3 failed").
      expect((await page('/dashboard?queue=acts.rows', url)).text).toContain('<button>redrive 2 of 3 failed</button>');
      const a = await post('redrive', { queue: 'acts.rows' }, { url });
      expect(decodeURIComponent(a.headers.get('location')!)).toContain('Queue acts.rows: 2 failed jobs redriven, 1 left: press again '
        + '(one click redrives at most 2).');
      expect(await Promise.all(ids.map(stateOf))).toEqual(['pending', 'pending', 'failure']);
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    await sql('select jobs.cancel_bulk($1::bigint[], null)', [ids]);
  });

  it.each([
    [['--dashboard-actions', '--dashboard-redrive-rows', '0'], 'pgdrain: --dashboard-redrive-rows: '
      + 'must be an integer from 1 to 1000000, got "0"\n'],
    [['--dashboard-actions', '--dashboard-redrive-rows', '2.5'], 'pgdrain: --dashboard-redrive-rows: '
      + 'must be an integer from 1 to 1000000, got "2.5"\n'],
    [['--dashboard-redrive-rows', '5'], 'pgdrain: --dashboard-redrive-rows: bounds the dashboard\'s redrive button: give --dashboard-actions too\n'],
  ])('--dashboard-redrive-rows: %j exits 2 naming the flag', async (args, stderr) => {
    const server = startServe(db.url, args, { PGDRAIN_TOKEN: TOKEN });
    server.url.catch(() => {});
    expect(await server.exited).toBe(2);
    expect(server.stderr()).toBe(stderr);
  });

  it('needs PGDRAIN_TOKEN: with only PGDRAIN_HMAC_SECRET it exits 2 naming the flag', async () => {
    const server = start({ PGDRAIN_TOKEN: '', PGDRAIN_HMAC_SECRET: 'dashboard-hmac-secret-0123456789' });
    server.url.catch(() => {});
    expect(await server.exited).toBe(2);
    expect(server.stderr()).toBe('pgdrain: --dashboard-actions: needs PGDRAIN_TOKEN: a browser logs in to the dashboard with it, '
      + 'and it keys the forms\' tokens\n');
  });
});
