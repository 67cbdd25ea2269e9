// The dashboard's actions, who may take them and what they say: only the
// token acts (a signed request gets the page without forms, and 403 on an
// action); a form token does only what its form does; a host with a default port is the same origin; a note whose
// signature does not match is left out, the page shown; a queue's redrive
// puts back at most limits.dashboardRedriveRows a click and says what is
// left. A real server against a real PostgreSQL.
import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { signRequest } from '../src/http/index.js';
import { DashboardSigner } from '../src/http/dashboard-guard.js';
import { dashboardRig, SECRET, TOKEN } from './support/dashboard-actions.js';

const { sql, queue, listen, base, readOnly, basic, page, formToken, post, paused, stateOf, failed } = await dashboardRig();

await sql(`select jobs.create_queue('acts')`);

describe('a signed request (PGDRAIN_HMAC_SECRET: schedulers, pg_net) takes no action: only the token does', () => {
  it('its page has no forms and no form token; its POST, even with a form token and this Origin, is a 403 naming the rule', async () => {
    const signedPage = await fetch(`${base}/dashboard`, { headers: await signRequest(SECRET, 'GET', '/dashboard', '') });
    expect(signedPage.status).toBe(200);
    const text = await signedPage.text();
    expect(text).toContain('<h1>pgdrain</h1>');
    expect(text).not.toMatch(/<form|csrf/);
    const body = new URLSearchParams({ queue: 'acts', csrf: await formToken('pause', { queue: 'acts' }) }).toString();
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

describe('a form token does what its form does, nothing else', () => {
  it('one lifted from a form and sent with another action or target is refused (403), nothing changed; each with its own form acts', async () => {
    await sql(`select jobs.create_queue('acts.other')`);
    const [f1, f2] = await failed('acts', 2);
    const waiting = await queue.publish('acts.wait', {}, { queue: 'acts' });
    const token = {
      pauseActs: await formToken('pause', { queue: 'acts' }),
      pauseOther: await formToken('pause', { queue: 'acts.other' }),
      redriveF1: await formToken('redrive', { job: f1! }),
      redriveActs: await formToken('redrive', { queue: 'acts' }),
      cancel: await formToken('cancel', {}),
    };
    expect((await post('pause', { queue: 'acts.other' }, { csrf: token.pauseOther })).status).toBe(303);
    const swapped: [string, Record<string, string>, string][] = [
      ['pause', { queue: 'acts.other' }, token.pauseActs],
      ['resume', { queue: 'acts.other' }, token.pauseOther],
      ['pause', { queue: 'acts' }, token.cancel],
      ['redrive', { job: f2! }, token.redriveF1],
      ['redrive', { queue: 'acts' }, token.redriveF1],
      ['redrive', { job: f1! }, token.redriveActs],
      ['cancel', { job: waiting }, token.pauseActs],
      ['cancel', { job: waiting }, token.redriveF1],
    ];
    for (const [action, fields, csrf] of swapped) {
      const a = await post(action, fields, { csrf });
      expect(a.status, `${action} ${JSON.stringify(fields)}`).toBe(403);
      expect(a.text).toMatch(/403 forbidden<\/strong>: csrf: invalid form token: take the action from the dashboard&#39;s own page/);
      expect(a.text).toContain('Nothing was changed.');
    }
    expect([await paused('acts'), await paused('acts.other')]).toEqual([false, true]);
    expect(await Promise.all([f1!, f2!, waiting].map(stateOf))).toEqual(['failure', 'failure', 'pending']);
    // The page's own forms, each with its token.
    expect((await post('resume', { queue: 'acts.other' })).status).toBe(303);
    expect((await post('redrive', { job: f1! }, { csrf: token.redriveF1 })).status).toBe(303);
    expect((await post('cancel', { job: waiting }, { csrf: token.cancel })).status).toBe(303);
    expect((await post('redrive', { queue: 'acts' }, { csrf: token.redriveActs })).status).toBe(303);
    expect(await paused('acts.other')).toBe(false);
    expect(await Promise.all([f1!, f2!, waiting].map(stateOf))).toEqual(['pending', 'pending', 'cancelled']);
    await sql('select jobs.cancel_bulk($1::bigint[], null)', [[f1, f2]]);
  });
});

describe('behind a proxy', () => {
  it('a default port (80, 443) named on either side is the same host', async () => {
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
    const csrf = await formToken('pause', { queue: 'acts' });
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
});

describe('the note after an action', () => {
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

describe('a queue\'s redrive from the dashboard', () => {
  it('a queue\'s redrive puts back at most limits.dashboardRedriveRows a click, and says how many are left', async () => {
    const small = await listen({ token: TOKEN, dashboardActions: true, limits: { dashboardRedriveRows: 2 } });
    await sql(`select jobs.create_queue('acts.many')`);
    const ids = await failed('acts.many', 5);
    // The button says what a click does.
    expect((await page('/dashboard?queue=acts.many', small)).text).toContain('<button>redrive 2 of 5 failed</button>');
    // Clicked again and again on the page it came from.
    const csrf = await formToken('redrive', { queue: 'acts.many' }, small);
    const click = async () => {
      const a = await post('redrive', { queue: 'acts.many' }, { url: small, csrf });
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
      + '1 held back by their dedupe key (a waiting or running job, or one redriven now, holds it).&sig=');
    expect(await stateOf(free!)).toBe('pending');
    expect(await stateOf(held)).toBe('failure');
    // The job's own redrive says why it stays.
    const one = await post('redrive', { job: held });
    expect(one.status).toBe(404);
    expect(one.text).toContain(`job: job ${held} was not redriven: a waiting or running job holds its dedupe key (redriving it would make two)`);
    await sql('select jobs.cancel_bulk($1::bigint[], null)', [[free, waiting]]);
  });

  it('a click passes over failed jobs whose dedupe key is held: those behind them go back, and the note counts the held ones', async () => {
    const small = await listen({ token: TOKEN, dashboardActions: true, limits: { dashboardRedriveRows: 2 } });
    await sql(`select jobs.create_queue('acts.behind')`);
    const held: string[] = [];
    for (const key of ['b1', 'b2', 'b3']) held.push(await queue.publish('acts.behind.job', {}, { queue: 'acts.behind', dedupeKey: key }));
    await sql('select jobs.fail($1::bigint[], $2)', [held, 'boom']);
    const holders: string[] = [];
    for (const key of ['b1', 'b2', 'b3']) holders.push(await queue.publish('acts.behind.job', {}, { queue: 'acts.behind', dedupeKey: key }));
    const free = await failed('acts.behind', 3);
    const a = await post('redrive', { queue: 'acts.behind' }, { url: small });
    expect(a.status).toBe(303);
    // Before: the oldest 2 were held, so every click redrove none ("no failed job redriven; 6 left as they are").
    expect(decodeURIComponent(a.headers.get('location')!)).toContain('Queue acts.behind: 2 failed jobs redriven, 4 left: press again '
      + '(one click redrives at most 2); it passed over 3 held back by their dedupe key (a waiting or running job, or one redriven now, holds it).&sig=');
    expect(await Promise.all([...held, ...free].map(stateOf))).toEqual(['failure', 'failure', 'failure', 'pending', 'pending', 'failure']);
    await sql('select jobs.cancel_bulk($1::bigint[], null)', [[...holders, ...free]]);
  });

  it('a queue deleted since: 404 naming it, as pause\'s, its failures left as they are (jobs.redrive refuses it, PD009)', async () => {
    await sql(`select jobs.create_queue('acts.gone')`);
    const [id] = await failed('acts.gone');
    // Its button, on a page from before the queue was deleted.
    const csrf = await formToken('redrive', { queue: 'acts.gone' });
    await sql(`select jobs.delete_queue('acts.gone')`);
    const a = await post('redrive', { queue: 'acts.gone' }, { csrf });
    // Before: a 303 and the note "Queue acts.gone: no failed job to redrive." (jobs.redrive answered 0).
    expect(a.status).toBe(404);
    expect(a.text).toContain('queue: no queue named &quot;acts.gone&quot;');
    expect(await stateOf(id!)).toBe('failure');
  });
});
