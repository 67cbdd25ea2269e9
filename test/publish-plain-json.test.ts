// What JSON would change on the way: attributes that are not a plain object
// (a Date reached the database as a string and was refused there; a Map or a
// class instance went as {} or as its fields, silently), and a body holding a
// Map, Set or Promise (written as {}: the payload lost). publish, publishBulk
// and publishEvent refuse them at the TS edge, naming the field, before any
// statement (src/options.ts attributes, src/json-text.ts jsonParam). A Date
// body is kept: JSON writes it as its ISO string, which loses nothing.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, type PgDrainError } from '../src/index.js';
import { countingDriver } from './support/counting-driver.js';
import { testDb } from './support/db.js';

const db = await testDb();
const counts = new Map<string, number>();
const queue = createQueue({ driver: countingDriver(db.driver, counts), tasks: {} });
const statements = () => [...counts.values()].reduce((sum, n) => sum + n, 0);
const rejection = (p: Promise<unknown>) => p.then(() => { throw new Error('published'); }, (e: unknown) => e as PgDrainError);
const written = async () => (await db.sql<{ n: number }>('select count(*)::int as n from jobs.job_queue'))[0]!.n;

class Tags {
  region = 'eu';
}

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
  counts.clear();
});

describe('attributes that are not a plain JSON object', () => {
  it.each([
    ['a Date', new Date(0), 'must be a plain JSON object, not a class instance (got a Date)'],
    ['a Map', new Map([['partner', 'acme']]), 'must be a plain JSON object, not a class instance (got a Map)'],
    ['a class instance', new Tags(), 'must be a plain JSON object, not a class instance (got a Tags)'],
    ['an object holding a Map', { partner: new Map([['id', 7]]) },
     'must not lose data in JSON: options.attributes.partner is a Map: '
     + 'store Object.fromEntries(it) or [...it] (JSON would store it as {})'],
  ] as const)('%s: publish, publishBulk and publishEvent refuse it naming the field, before any statement', async (_, value, rule) => {
    const attributes = value as unknown as Record<string, never>;
    // Unfixed, the Date failed in the database (PD014: "must be a JSON object,
    // got string"); the Map and the instance were written as {} and { region }.
    expect(await rejection(queue.publish('t', {}, { attributes })))
      .toMatchObject({ name: 'ValidationError', field: 'options.attributes', message: `options.attributes: ${rule}` });
    expect(await rejection(queue.publishEvent('user.created', {}, { attributes })))
      .toMatchObject({ name: 'ValidationError', field: 'options.attributes', message: `options.attributes: ${rule}` });
    const bulkRule = rule.replace('options.attributes', 'jobs[1].attributes');
    expect(await rejection(queue.publishBulk([{ task: 't' }, { task: 't', attributes }])))
      .toMatchObject({ name: 'ValidationError', field: 'jobs[1].attributes', message: `jobs[1].attributes: ${bulkRule}` });
    expect(statements()).toBe(0);
    expect(await written()).toBe(0);
  });

  it('a plain object, and one made with Object.create(null), are taken', async () => {
    const bare = Object.assign(Object.create(null) as Record<string, string>, { region: 'eu' });
    await queue.publish('t', {}, { attributes: { region: 'eu' } });
    await queue.publishBulk([{ task: 't', attributes: bare }]);
    expect(await db.sql('select attributes from jobs.job_queue')).toEqual([{ attributes: { region: 'eu' } }, { attributes: { region: 'eu' } }]);
  });
});

describe('a body JSON would write as {}', () => {
  it.each([
    ['a Map', new Map([['id', 7]]), 'body is a Map: store Object.fromEntries(it) or [...it] (JSON would store it as {})'],
    ['a Set', new Set([1, 2]), 'body is a Set: store [...it] (JSON would store it as {})'],
    ['a Map inside', { user: { roles: new Map([['admin', true]]) } },
     'body.user.roles is a Map: store Object.fromEntries(it) or [...it] (JSON would store it as {})'],
    ['a Set inside an array', [1, { ids: new Set([1]) }], 'body[1].ids is a Set: store [...it] (JSON would store it as {})'],
    ['a Promise (not awaited)', Promise.resolve({ id: 7 }), 'body is a Promise: await it (JSON would store it as {})'],
  ] as const)('%s: publish, publishBulk and publishEvent refuse it naming where, before any statement', async (_, body, where) => {
    // Unfixed: each was published with {} where its data was.
    const rule = `must not lose data in JSON: ${where}`;
    expect(await rejection(queue.publish('t', body)))
      .toMatchObject({ name: 'ValidationError', field: 'body', message: `body: ${rule}` });
    expect(await rejection(queue.publishEvent('user.created', body)))
      .toMatchObject({ name: 'ValidationError', field: 'body', message: `body: ${rule}` });
    expect(await rejection(queue.publishBulk([{ task: 't', body: 1 }, { task: 't', body }])))
      .toMatchObject({ name: 'ValidationError', field: 'jobs[1].body',
                       message: `jobs[1].body: ${rule.replace(/: body/, ': jobs[1].body')}` });
    expect(statements()).toBe(0);
    expect(await written()).toBe(0);
  });

  it('a Date body is its ISO string; an empty object, an empty Map and a class instance are what JSON writes', async () => {
    await queue.publish('t', new Date(Date.UTC(2030, 0, 1)));
    await queue.publish('t', { none: {} });
    await queue.publishBulk([{ task: 't', body: new Map() }, { task: 't', body: new Tags() }]);
    expect((await db.sql<{ body: unknown }>('select body from jobs.job_queue order by job_id')).map((r) => r.body))
      .toEqual(['2030-01-01T00:00:00.000Z', { none: {} }, {}, { region: 'eu' }]);
  });
});
