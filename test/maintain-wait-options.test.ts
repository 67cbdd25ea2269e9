// maintain()'s maxRows and budgetMs and waitFor's timeoutMs are refused with
// the project's own rules, naming the field: maxRows and budgetMs used zod's
// int(), which takes only safe integers (1e20 was told "must be an integer",
// which it is, rather than its bound: options.ts integerCheck), and
// waitFor({ timeoutMs: Infinity }) got zod's stock message ("Invalid input:
// expected number, received number").
import { afterAll, expect, it } from 'vitest';
import { createQueue, maintain } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const rejection = (p: Promise<unknown>) => p.then(() => 'resolved', (e: Error) => e.message);

it('maintain: an integer past its bound is refused naming the bound; not a number, naming the rule', async () => {
  expect(await rejection(maintain(db.driver, { maxRows: 1e20 }))).toBe('options.maxRows: must be at most 10000000');
  expect(await rejection(maintain(db.driver, { budgetMs: 1e20 }))).toBe('options.budgetMs: must be at most 86400000 (a day)');
  expect(await rejection(maintain(db.driver, { maxRows: 1.5 }))).toBe('options.maxRows: must be an integer');
  expect(await rejection(maintain(db.driver, { maxRows: Infinity }))).toBe('options.maxRows: must be an integer');
  expect(await rejection(maintain(db.driver, { budgetMs: Infinity })))
    .toBe('options.budgetMs: must be an integer number of milliseconds');
  expect(await rejection(maintain(db.driver, { budgetMs: 1.5 }))).toBe('options.budgetMs: must be an integer number of milliseconds');
  expect(await rejection(maintain(db.driver, { retentionSeconds: Infinity })))
    .toBe('options.retentionSeconds: must be a finite number of seconds');
  expect(await rejection(maintain(db.driver, { archive: 'yes' as never }))).toBe('options.archive: must be a boolean');
});

it('waitFor({ timeoutMs: Infinity }) names timeoutMs and says to leave it out to wait as long as it takes', async () => {
  const queue = createQueue({ connectionString: db.url, tasks: {} });
  afterAll(() => queue.close());
  const rule = 'must be a finite number of milliseconds (leave it out to wait as long as it takes)';
  for (const timeoutMs of [Infinity, NaN, '5' as never]) {
    await expect(queue.waitFor('1', { timeoutMs })).rejects.toMatchObject({ name: 'ValidationError', field: 'options.timeoutMs',
                                                                             message: `options.timeoutMs: ${rule}` });
  }
  await expect(queue.waitFor('1', { timeoutMs: -1 })).rejects.toMatchObject({ field: 'options.timeoutMs', message: 'options.timeoutMs: must be 0 or more' });
});
