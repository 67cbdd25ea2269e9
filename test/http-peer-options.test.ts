// POST /jobs given a pg-boss or graphile-worker option name (retryLimit,
// startAfter, singletonKey, jobKey…) refuses it as an unknown field and says
// which pgdrain option does its work, as publish() and publishBulk() do
// (src/peer-options.ts): the same hint, so the two cannot drift. Only where a
// job's options are: a bulk's own level, POST /events and POST /drain take no
// such option, and get no hint that would lead to a second refusal. The real
// app in process, against a real PostgreSQL.
import { describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, ValidationError } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'peer-options-token-0123456789';
const queue = createQueue({ driver: db.driver, tasks: {} });
const app = createApp({ queue, token: TOKEN });

/** POST path with body: its status, and its error's field and message. */
async function post(path: string, body: unknown) {
  const res = await app.request(path, { method: 'POST', body: JSON.stringify(body),
                                        headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
  const { error } = await res.json() as { error: { field: string | null; message: string } };
  return { status: res.status, field: error.field, message: error.message };
}

/** The hint publish() gives for option key: the parenthesis of its "unknown option" message. */
async function publishHint(key: string): Promise<string> {
  const error = await queue.publish('peer.opt', {}, { [key]: 1 } as never).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(ValidationError);
  const hint = /^options: unknown option "\w+" \((.+)\)$/.exec((error as ValidationError).message)?.[1];
  expect(hint, `publish's hint for ${key}`).toBeDefined();
  return hint!;
}

const PEER_KEYS = ['retryLimit', 'maxAttempts', 'startAfter', 'singletonKey', 'singletonSeconds', 'jobKey', 'jobKeyMode',
                   'queueName', 'retryDelay', 'retryDelayMax', 'expireInSeconds', 'retentionSeconds', 'flags'];

describe('POST /jobs given a pg-boss or graphile-worker option', () => {
  it.each(PEER_KEYS)('%s: one job is refused naming it, with the hint publish() gives; POST /events and /drain give none',
    async (key) => {
      const hint = await publishHint(key);
      expect(await post('/jobs', { task: 'peer.opt', [key]: 1 }))
        .toEqual({ status: 400, field: key, message: `${key}: unknown field (${hint})` });
      // Neither takes the option the hint names (publishEvent() gives no hint either).
      for (const path of ['/events/peer.evt', '/drain']) {
        expect(await post(path, { [key]: 1 })).toEqual({ status: 400, field: key, message: `${key}: unknown field` });
      }
    });

  it.each(PEER_KEYS)("%s: a job of a bulk is refused naming it, with the same hint; the bulk's own level gives none",
    async (key) => {
      const hint = await publishHint(key);
      expect(await post('/jobs', { jobs: [{ task: 'peer.opt' }, { task: 'peer.opt', [key]: 1 }] }))
        .toEqual({ status: 400, field: `jobs[1].${key}`, message: `jobs[1].${key}: unknown field (${hint})` });
      expect(await post('/jobs', { jobs: [{ task: 'peer.opt' }], [key]: 1 }))
        .toEqual({ status: 400, field: key, message: `${key}: unknown field` });
    });
});

// POST /drain takes drain()'s pollMs, lingerMs and exclude: pg-boss's work() and graphile's run() names for them
// are refused with drain()'s hint, which names only fields POST /drain has.
describe('POST /drain given a pg-boss or graphile-worker drain option', () => {
  const said = {
    pollingIntervalSeconds: "pg-boss's pollingIntervalSeconds is pollMs, in milliseconds, with lingerMs to wait on an empty queue",
    pollInterval: "graphile-worker's pollInterval is pollMs, with lingerMs to wait on an empty queue",
    forbiddenFlags: "graphile-worker's forbiddenFlags is exclude: [{ flag: true }]",
  };
  it.each(Object.entries(said))('%s names the field that does its work', async (key, hint) => {
    expect(await post('/drain', { [key]: 5 })).toEqual({ status: 400, field: key, message: `${key}: unknown field (${hint})` });
    const res = await app.request(`/drain?${key}=5`, { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe(`${key}: unknown field (${hint})`);
  });

  it('and takes the fields it names', async () => {
    const res = await app.request('/drain', { method: 'POST', body: JSON.stringify({ pollMs: 1000, exclude: [{ flag: true }] }),
                                              headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
    expect(res.status).toBe(200);
  });
});
