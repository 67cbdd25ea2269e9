// A text's length bound counts characters in TypeScript as SQL's length()
// does (code points): a string's .length counts UTF-16 code units, so a
// takeToken key or a tier name of emoji (two units each) at SQL's bound was
// refused by TS though the database takes it. At the bound both take it; one
// past it, both refuse it. The keys and group ids checked by zod's maxLength
// (which counts code points) are here too, so a zod that did not would show.
import { beforeEach, describe, expect, it } from 'vitest';
import { createNamedQueue, publish, takeToken, ValidationError } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const emoji = (n: number) => '😀'.repeat(n);

async function rejection(p: Promise<unknown>): Promise<ValidationError> {
  const error = await p.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(ValidationError);
  return error as ValidationError;
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

// Each: the bound, the TS call with the text, the SQL call ($1 the text), the field, the stored length.
const cases = [
  { field: 'options.dedupeKey', max: 500, column: 'dedupe_key',
    ts: (s: string) => publish(db.driver, 't', null, { dedupeKey: s }),
    sql: `select jobs.publish('t', dedupe_key => $1)`,
    stored: `select length(dedupe_key) as n from jobs.job_queue` },
  { field: 'options.serialKey', max: 500, column: 'serial_key',
    ts: (s: string) => publish(db.driver, 't', null, { serialKey: s }),
    sql: `select jobs.publish('t', serial_key => $1)`,
    stored: `select length(serial_key) as n from jobs.job_queue` },
  { field: 'options.group.id', max: 200, column: 'group_id',
    ts: (s: string) => publish(db.driver, 't', null, { group: { id: s } }),
    sql: `select jobs.publish('t', group_id => $1)`,
    stored: `select length(group_id) as n from jobs.job_queue` },
  { field: 'key', max: 200, column: 'key',
    ts: (s: string) => takeToken(db.driver, s, { limit: 5, perSeconds: 1 }),
    sql: `select jobs.take_token($1, 5, 1)`,
    stored: `select max(length(key)) as n from jobs.rate_limit` },
] as const;

describe.each(cases)('$field', (c) => {
  it(`takes ${c.max} emoji (${2 * c.max} UTF-16 units), as SQL does`, async () => {
    await c.ts(emoji(c.max));
    expect(await sql(c.stored)).toEqual([{ n: c.max }]);
    await sql(c.sql, [emoji(c.max)]);
  });

  it(`refuses ${c.max + 1} emoji in TS and in SQL, writing nothing`, async () => {
    const before = await sql(c.stored);
    const error = await rejection(c.ts(emoji(c.max + 1)));
    expect(error.field).toBe(c.field);
    expect(error.message).toMatch(`at most ${c.max} characters`);
    expect(await sqlErrorOf(sql, c.sql, [emoji(c.max + 1)])).toMatchObject({ column: c.column });
    expect(await sql(c.stored)).toEqual(before);
  });
});

it('a queue takes a tier name of 200 emoji, as SQL does, and refuses 201', async () => {
  await createNamedQueue(db.driver, 'tiers_q', { groupConcurrency: { default: 1, tiers: { [emoji(200)]: 2 } } });
  expect(await sql(`select length(t) as n from jobs.queue, jsonb_object_keys(group_tiers) t where name = 'tiers_q'`)).toEqual([{ n: 200 }]);
  const error = await rejection(createNamedQueue(db.driver, 'tiers_q2', { groupConcurrency: { default: 1, tiers: { [emoji(201)]: 2 } } }));
  expect(error.message).toMatch('at most 200 characters');
  expect(await sqlErrorOf(sql, `select jobs.create_queue('tiers_q2', group_concurrency => 1, group_tiers => $1)`,
    [JSON.stringify({ [emoji(201)]: 2 })])).toMatchObject({ code: 'PD019' });
  expect(await sql(`select name from jobs.queue where name = 'tiers_q2'`)).toEqual([]);
});
