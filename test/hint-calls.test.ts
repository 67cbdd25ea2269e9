// A fix-it hint names the call of the caller's own language: the SQL
// functions' "create it with jobs.create_queue('q')" is, to a TS caller,
// queues.create('q') (as queueSize's), and to the CLI `pgdrain queue create q`;
// a delete refused while jobs wait, "purge it first (jobs.purge_queue('q'))",
// is queues.purge('q') and `pgdrain queue purge q`; its other hints too:
// "any claim or jobs.maintain() ends them" is maintain(db) to TS and
// `pgdrain drain` to the CLI, "cancel them (jobs.cancel_bulk)" (and a purge's
// "cancel some with jobs.cancel_bulk") queue.cancel(jobIds) and `pgdrain cancel`.
// Before, a TS publish to an unknown or full queue, and a TS delete of a
// dead-letter target or of a queue with jobs (the CLI's too), were told to run
// the SQL (and, until the other hints were routed, still were by those).
// dist/cli.mjs: `npm run build` first.
import { beforeAll, describe, expect, it } from 'vitest';
import { asCommand, asTsCalls } from '../src/hint-calls.js';
import { createQueue } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { deferredDependant } from './support/deferred-dependant.js';
import { runCli } from './support/drain-process.js';
import { lockSessions } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
// Made here, not in beforeAll: lockSessions registers the afterAll that ends its sessions, which a hook cannot.
const session = lockSessions(db.url);

let runningId = '';

beforeAll(async () => {
  await queue.queues.create('hint_full', { maxSize: 1 });
  await queue.publish('t.x', {}, { queue: 'hint_full' });
  await queue.queues.create('hint_dead');
  await queue.queues.create('hint_mail', { deadLetter: 'hint_dead' });
  await queue.queues.create('hint_busy');
  await queue.publish('t.x', {}, { queue: 'hint_busy' });
  // A dead-letter queue an active job names; one with more retried heads of serial keys than one purge
  // ends (jobs.max_serial_keys(): 500); one with a dependant a cascade deferred (its end pending).
  await queue.queues.create('hint_letters');
  await queue.publish('t.x', {}, { deadLetter: 'hint_letters' });
  await queue.queues.create('hint_serial');
  await sql(`select jobs.publish('t.s', queue => 'hint_serial', serial_key => 'k' || g) from generate_series(1, 501) g`);
  await sql(`select count(*) from jobs.consume(501, queue => 'hint_serial')`);
  await sql(`select jobs.nack(array_agg(job_id), array_agg('x'::text)) from jobs.job_queue where queue = 'hint_serial'`);
  // One whose only active job runs: no purge helps there.
  await queue.queues.create('hint_running');
  runningId = await queue.publish('t.x', {}, { queue: 'hint_running' });
  await sql(`select jobs.consume(1, queue => 'hint_running')`);
  // One with a job waiting and one running: the purge, then the running one's end.
  await queue.queues.create('hint_mixed');
  await queue.publish('t.x', {}, { queue: 'hint_mixed' });
  await sql(`select jobs.consume(1, queue => 'hint_mixed')`);
  await queue.publish('t.x', {}, { queue: 'hint_mixed' });
  // Last: any claim ends it.
  await queue.queues.create('hint_deferred');
  await deferredDependant(sql, session, undefined, 'hint_deferred');
});

const DEFERRED = "name: queue 'hint_deferred' still has 1 waiting and 0 running jobs, and 1 cancelled dependants to end: ";
const LETTERS = /^name: queue 'hint_letters' is the dead-letter queue of 1 active jobs of other queues \(job \d+ first\), published with it as their dead_letter: let them end, or cancel them \(/;
const SERIAL = "name: queue 'hint_serial' has 501 waiting jobs that ran before (a retry pending) heading their serial keys, more than "
  + "the 500 one call ends (each takes its key's lock until commit, from PostgreSQL's shared lock table): cancel some with ";
const RUNNING = () => `name: queue 'hint_running' still has 0 waiting and 1 running jobs (job ${runningId} first): `
  + 'let its running jobs end, or cancel them (';
// Dependants to end and a running job, none waiting: both hints (sql/0034), each call rewritten.
const BOTH = "name: queue 'q' still has 0 waiting and 1 running jobs (job 7 first), and 1 cancelled dependants to end: ";
const matching = (start: RegExp, end: string) => expect.stringMatching(new RegExp(`${start.source}${end.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));

const BUSY = "name: queue 'hint_busy' still has 1 waiting and 0 running jobs: purge it first";
const MIXED = "name: queue 'hint_mixed' still has 1 waiting and 1 running jobs: purge it first";
const WAIT = ' and wait for its running jobs to end';
const DEFAULT = 'name: the default queue cannot be deleted (jobs published without a queue go there); purge it with';

describe('TS callers are told the TS call', () => {
  it('an unknown queue: queues.create', async () => {
    await expect(queue.publish('t.x', {}, { queue: 'hint_none' })).rejects.toMatchObject({ code: 'invalid_argument',
      message: "options.queue: no queue named 'hint_none'; create it with queues.create('hint_none')" });
    await expect(queue.publishBulk([{ task: 't.x' }], 'hint_none')).rejects.toMatchObject({
      message: "queue: no queue named 'hint_none'; create it with queues.create('hint_none')" });
    await expect(queue.queueSize('hint_none')).rejects.toMatchObject({
      message: "name: no queue named hint_none; create it with queues.create('hint_none')" });
  });

  it('a full queue: queues.create with maxSize', async () => {
    await expect(queue.publish('t.x', {}, { queue: 'hint_full' })).rejects.toMatchObject({ code: 'queue_full',
      message: "options.queue: queue 'hint_full' is full: 1 waiting job + 1 published > max_size 1; "
        + "publish later or raise it with queues.create('hint_full', { maxSize: ... })" });
  });

  it('a dead-letter target: queues.create with deadLetter null', async () => {
    await expect(queue.queues.delete('hint_dead')).rejects.toMatchObject({ code: 'invalid_argument',
      message: "name: queue 'hint_dead' is the dead-letter queue of 'hint_mail': give that one another "
        + "(queues.create('hint_mail', { deadLetter: null })) first" });
  });

  it('a queue with jobs, and the default queue: queues.purge', async () => {
    await expect(queue.queues.delete('hint_busy')).rejects.toMatchObject({ code: 'invalid_argument',
      message: `${BUSY} (queues.purge('hint_busy'))` });
    await expect(queue.queues.delete('default')).rejects.toMatchObject({ code: 'invalid_argument',
      message: `${DEFAULT} queues.purge('default')` });
  });
});

it('SQL callers keep the SQL call', async () => {
  const e = await sqlErrorOf(sql, `select jobs.publish('t.x', queue => 'hint_none')`);
  expect(e.message).toBe("queue: no queue named 'hint_none'; create it with jobs.create_queue('hint_none')");
  expect((await sqlErrorOf(sql, `select jobs.delete_queue('hint_busy')`)).message)
    .toBe(`${BUSY} (jobs.purge_queue('hint_busy'))`);
});

it('TS callers: the other hints of a refused delete or purge', async () => {
  await expect(queue.queues.delete('hint_deferred')).rejects.toMatchObject({ message: `${DEFERRED}any claim or maintain(db) `
    + "ends them; purge it first (queues.purge('hint_deferred'))" });
  await expect(queue.queues.delete('hint_letters')).rejects.toMatchObject({ message: matching(LETTERS, 'queue.cancel(jobIds)), first') });
  await expect(queue.queues.purge('hint_serial')).rejects.toMatchObject({ message: `${SERIAL}queue.cancel(jobIds) in smaller calls first` });
});

it('a queue whose only active jobs run: let them end or cancel them, in each surface\'s call (it said "purge it first")', async () => {
  expect((await sqlErrorOf(sql, `select jobs.delete_queue('hint_running')`)).message).toBe(`${RUNNING()}jobs.cancel_bulk), first`);
  await expect(queue.queues.delete('hint_running')).rejects.toMatchObject({ code: 'invalid_argument',
    message: `${RUNNING()}queue.cancel(jobIds)), first` });
  expect(await runCli(db.url, 'queue', 'delete', 'hint_running')).toMatchObject({ code: 2,
    stderr: `pgdrain: ${RUNNING()}pgdrain cancel ID...), first\n` });
  const sqlText = `${BOTH}any claim or jobs.maintain() ends them; let its running jobs end, or cancel them (jobs.cancel_bulk), first`;
  const ts = asTsCalls(sqlText);
  expect(ts).toBe(`${BOTH}any claim or maintain(db) ends them; let its running jobs end, or cancel them (queue.cancel(jobIds)), first`);
  expect(asCommand(ts))
    .toBe(`${BOTH}any claim (pgdrain drain) ends them; let its running jobs end, or cancel them (pgdrain cancel ID...), first`);
  // None running nor waiting: the maintain hint alone ends the message.
  expect(asCommand(asTsCalls(`${BOTH}any claim or jobs.maintain() ends them`))).toBe(`${BOTH}any claim (pgdrain drain) ends them`);
});

it('SQL callers keep the SQL calls of the other hints', async () => {
  expect((await sqlErrorOf(sql, `select jobs.delete_queue('hint_deferred')`)).message).toBe(`${DEFERRED}any claim or jobs.maintain() `
    + "ends them; purge it first (jobs.purge_queue('hint_deferred'))");
  expect((await sqlErrorOf(sql, `select jobs.delete_queue('hint_letters')`)).message).toEqual(matching(LETTERS, 'jobs.cancel_bulk), first'));
  expect((await sqlErrorOf(sql, `select jobs.purge_queue('hint_serial')`)).message).toBe(`${SERIAL}jobs.cancel_bulk in smaller calls first`);
});

// With none running, the hint is the purge alone (it said "and wait for its running jobs to end" too);
// with some running, both; each surface's purge in either.
it('jobs waiting, some running or none: the purge, and the running ones\' end only when some run', async () => {
  expect((await sqlErrorOf(sql, `select jobs.delete_queue('hint_mixed')`)).message).toBe(`${MIXED} (jobs.purge_queue('hint_mixed'))${WAIT}`);
  await expect(queue.queues.delete('hint_mixed')).rejects.toMatchObject({ message: `${MIXED} (queues.purge('hint_mixed'))${WAIT}` });
  expect(await runCli(db.url, 'queue', 'delete', 'hint_mixed')).toMatchObject({ code: 2,
    stderr: `pgdrain: ${MIXED} (pgdrain queue purge hint_mixed)${WAIT}\n` });
  expect((await sqlErrorOf(sql, `select jobs.delete_queue('hint_busy')`)).message).not.toContain(WAIT);
  // Dependants to end besides, with some running or none: the purge after the maintain hint, each call rewritten.
  const lead = (running: number) => `name: queue 'q' still has 1 waiting and ${running} running jobs, and 1 cancelled dependants to end: `;
  for (const [running, tail] of [[0, ''], [1, WAIT]] as const) {
    const ts = asTsCalls(`${lead(running)}any claim or jobs.maintain() ends them; purge it first (jobs.purge_queue('q'))${tail}`);
    expect(ts).toBe(`${lead(running)}any claim or maintain(db) ends them; purge it first (queues.purge('q'))${tail}`);
    expect(asCommand(ts)).toBe(`${lead(running)}any claim (pgdrain drain) ends them; purge it first (pgdrain queue purge q)${tail}`);
  }
});

describe('the CLI names the command', () => {
  it('the other hints of a refused delete or purge', async () => {
    expect(await runCli(db.url, 'queue', 'delete', 'hint_deferred')).toMatchObject({ code: 2, stderr: `pgdrain: ${DEFERRED}`
      + 'any claim (pgdrain drain) ends them; purge it first (pgdrain queue purge hint_deferred)\n' });
    expect(await runCli(db.url, 'queue', 'delete', 'hint_letters')).toMatchObject({ code: 2,
      stderr: expect.stringMatching(new RegExp(`^pgdrain: ${LETTERS.source.slice(1)}pgdrain cancel ID\\.\\.\\.\\), first\n$`)) });
    expect(await runCli(db.url, 'queue', 'purge', 'hint_serial')).toMatchObject({ code: 2,
      stderr: `pgdrain: ${SERIAL}pgdrain cancel ID... in smaller calls first\n` });
  });


  it('an unknown queue, a full one, a dead-letter target', async () => {
    expect(await runCli(db.url, 'publish', 't.x', '--queue', 'hint_none')).toMatchObject({ code: 2,
      stderr: "pgdrain: --queue: no queue named 'hint_none'; create it with pgdrain queue create hint_none\n" });
    expect(await runCli(db.url, 'publish', 't.x', '--queue', 'hint_full')).toMatchObject({ code: 1,
      stderr: "pgdrain: --queue: queue 'hint_full' is full: 1 waiting job + 1 published > max_size 1; "
        + 'publish later or raise it with pgdrain queue create hint_full --max-size N\n' });
    expect(await runCli(db.url, 'queue', 'delete', 'hint_dead')).toMatchObject({ code: 2,
      stderr: "pgdrain: name: queue 'hint_dead' is the dead-letter queue of 'hint_mail': give that one another "
        + '(pgdrain queue create hint_mail --no-dead-letter) first\n' });
  });

  it('a queue with jobs, and the default queue: pgdrain queue purge', async () => {
    expect(await runCli(db.url, 'queue', 'delete', 'hint_busy')).toMatchObject({ code: 2,
      stderr: `pgdrain: ${BUSY} (pgdrain queue purge hint_busy)\n` });
    expect(await runCli(db.url, 'queue', 'delete', 'default')).toMatchObject({ code: 2,
      stderr: `pgdrain: ${DEFAULT} pgdrain queue purge default\n` });
  });
});
