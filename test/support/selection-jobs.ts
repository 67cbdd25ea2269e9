// The jobs the drain-edge tests of filter and exclude publish
// (test/*-drain-selection.test.ts): one task, each job named in its body by
// its attributes, and what became of them.
import type { Queue } from '../../src/index.js';
import type { TestDb } from './db.js';

const JOBS = [['eu', { region: 'eu' }], ['eu-acme', { region: 'eu', partner: 'acme' }], ['us', { region: 'us' }],
              ['us-acme', { region: 'us', partner: 'acme' }], ['us-bob-gold', { region: 'us', partner: 'bob', tier: 'gold' }],
              ['plain', undefined]] as const;
/** Every job's name, sorted. */
export const ALL_JOBS = JOBS.map(([name]) => name).sort();

/** Empties the queue and publishes the jobs as task (body { name, a, b }: demo.math.sum takes them too). */
export async function publishSelectionJobs(db: TestDb, queue: Pick<Queue, 'publishBulk'>, task: string): Promise<void> {
  await db.sql('truncate jobs.job_queue, jobs.job');
  await queue.publishBulk(JOBS.map(([name, attributes], i) => ({ task, body: { name, a: i, b: 2 }, timeoutSeconds: 5,
                                                                  ...(attributes ? { attributes } : {}) })));
}

/** Names of the jobs that ran, and of those never claimed (attempt 0, no lease), sorted. */
export function selectionOutcome(db: TestDb): { ran(): Promise<string[]>; untouched(): Promise<string[]> } {
  const names = async (where: string) => (await db.sql<{ n: string }>(`select body->>'name' as n from ${where} order by 1`))
    .map((r) => r.n);
  return {
    ran: () => names(`jobs.job where status = 'success'`),
    untouched: () => names('jobs.job_queue where attempt = 0 and lease_until is null'),
  };
}
