// Bad input a scripted sweep of every public jobs.* function found accepted:
// a claim's max_timeout negative or NaN (NaN fitted every job), a worker_id
// of any length or only whitespace, topic patterns and keys of only
// whitespace where an empty one is refused, and pause/resume of what is no
// queue name. Each refused with its PD code naming the argument, nothing
// written.
import { beforeEach, describe, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';
import { tableState } from './support/table-state.js';

const db = await testDb();
const sql = db.sql;
let job = '';

/** Every row of the tables a refused call could have written, as one text. */
const state = () => tableState(sql, [['jobs.job_queue', 'job_id'], ['jobs.job', 'job_id'], ['jobs.queue', 'name'], ['jobs.rate_limit', 'key']]);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.rate_limit');
  await sql(`select jobs.create_queue('inq'); select jobs.resume_queue('inq')`);
  job = (await sql<{ id: string }>(`select jobs.publish('t.a') as id`))[0]!.id;
});

const long = `repeat('w', 201)`;
const cases: [string, string, string, string, RegExp][] = [
  // Before: nothing claimed (a negative fits no job), or every job (NaN is above every number).
  ['claim: max_timeout negative', `select * from jobs.claim(1, max_timeout => -1)`, 'PD005', 'max_timeout', /0 or more seconds, or null for any, got -1$/],
  ['claim: max_timeout NaN', `select * from jobs.claim(1, max_timeout => 'NaN')`, 'PD005', 'max_timeout', /got NaN$/],
  ['claim_json: max_timeout NaN', `select jobs.claim_json(1, max_timeout => 'NaN')`, 'PD005', 'max_timeout', /got NaN$/],
  ['claim_json: max_timeout negative', `select jobs.claim_json(1, max_timeout => -0.5)`, 'PD005', 'max_timeout', /got -0.5$/],
  // Before: recorded on the job as given.
  ['claim: worker_id of 201 characters', `select * from jobs.claim(1, worker_id => ${long})`, 'PD005', 'worker_id', /at most 200 characters/],
  ['claim: worker_id empty', `select * from jobs.claim(1, worker_id => '')`, 'PD005', 'worker_id', /non-empty text/],
  ['claim: worker_id only whitespace', `select * from jobs.claim(1, worker_id => E' \\t')`, 'PD005', 'worker_id', /not only whitespace/],
  ['claim_json: worker_id of 201 characters', `select jobs.claim_json(1, worker_id => ${long})`, 'PD005', 'worker_id', /at most 200 characters/],
  ['claim_json: worker_id only whitespace', `select jobs.claim_json(1, worker_id => ' ')`, 'PD005', 'worker_id', /got ' '$/],
  // Before: a pattern matching no task (an empty one was refused).
  ['consume_topic: a pattern of spaces', `select * from jobs.consume_topic('  ', 1)`, 'PD006', 'pattern', /non-empty LIKE pattern/],
  ['claim_json: a pattern of a newline', `select jobs.claim_json(1, E'\\n')`, 'PD006', 'pattern', /non-empty LIKE pattern/],
  // Before: published with a key of spaces (an empty one was refused).
  ['publish: a dedupe_key of spaces', `select jobs.publish('t.b', dedupe_key => '   ')`, 'PD011', 'dedupe_key', /non-empty text/],
  ['publish: a serial_key of a tab', `select jobs.publish('t.b', serial_key => E'\\t')`, 'PD012', 'serial_key', /non-empty text/],
  ['publish_arrays: a dedupe key of spaces', `select jobs.publish_arrays(array['t.b', 't.c'], dedupe_keys => array['k', ' '])`,
   'PD011', 'jobs[2].dedupe_key', /non-empty text/],
  ['publish_arrays: a serial key of spaces', `select jobs.publish_arrays(array['t.b'], serial_keys => array[' '])`,
   'PD012', 'jobs[1].serial_key', /non-empty text/],
  ['cancel_key: a key of spaces', `select jobs.cancel_key(' ')`, 'PD011', 'dedupe_key', /non-empty text/],
  ['take_token: a key of spaces', `select jobs.take_token('  ', 1, 60)`, 'PDC03', 'key', /non-empty text/],
  // Before: false, as for a queue that does not exist (purge_queue and delete_queue refuse it).
  ['pause_queue: no queue name', `select jobs.pause_queue('two words')`, 'PD009', 'name', /must be a queue name/],
  ['pause_queue: null', `select jobs.pause_queue(null)`, 'PD009', 'name', /must be a queue name/],
  ['resume_queue: an empty name', `select jobs.resume_queue('')`, 'PD009', 'name', /must be a queue name/],
];

describe('refused, naming the argument, writing nothing', () => {
  it.each(cases)('%s', async (_name, text, code, field, rule) => {
    const before = await state();
    const error = await sqlErrorOf(sql, text);
    expect({ code: error.code, column: error.column }).toEqual({ code, column: field });
    expect(error.message.startsWith(`${field}: `)).toBe(true);
    expect(error.message).toMatch(rule);
    expect(await state()).toBe(before);
  });
});

describe('what stays accepted', () => {
  it('max_timeout 0 claims nothing and counts the due job as unfit; null claims it', async () => {
    expect(await sql(`select (r->>'count')::int as count, (r->>'unfit')::int as unfit
                      from jobs.claim_json(1, max_timeout => 0) r`)).toEqual([{ count: 0, unfit: 1 }]);
    expect(await sql(`select job_id::text as id from jobs.claim(1, max_timeout => null)`)).toEqual([{ id: job }]);
  });

  it('a worker_id of 200 characters, with spaces inside, or none', async () => {
    await sql(`select jobs.publish('t.b'), jobs.publish('t.c')`);
    await sql(`select * from jobs.claim(1, worker_id => repeat('w', 200))`);
    await sql(`select * from jobs.claim(1, worker_id => ' host 7 ')`);
    await sql(`select * from jobs.claim(1)`);
    expect(await sql(`select length(worker_id) as n from jobs.job_queue order by job_id`))
      .toEqual([{ n: 200 }, { n: 8 }, { n: null }]);
  });

  it("keys and patterns with text besides whitespace ('v' is no whitespace)", async () => {
    expect(await sql(`select jobs.publish('t.b', dedupe_key => ' v ') is not null as ok`)).toEqual([{ ok: true }]);
    expect(await sql(`select jobs.take_token(' v', 1, 60) as wait`)).toEqual([{ wait: 0 }]);
    expect(await sql(`select count(*)::int as n from jobs.consume_topic(' %', 5)`)).toEqual([{ n: 0 }]);
  });

  it('pause and resume of a queue name that has no queue answer false, as delete_queue does', async () => {
    expect(await sql(`select jobs.pause_queue('ghost') as p, jobs.resume_queue('ghost') as r`)).toEqual([{ p: false, r: false }]);
    expect(await sql(`select jobs.pause_queue('inq') as p`)).toEqual([{ p: true }]);
  });
});
