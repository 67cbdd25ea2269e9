// A dependant whose cancel a cascade deferred (jobs.after_end): its
// dependency fails for good while another transaction holds the dependant's
// serial key with a publish of its own, lower in lock order than the key the
// failing settle holds (hashtext('low') < hashtext('high')), so the cascade
// cannot take it and leaves the dependant leased at attempt 0, to be ended by
// the next claim.
import { expect } from 'vitest';
import type { TestDb } from './db.js';
import type { LockSession } from './lock-sessions.js';

/**
 * Makes one: parent (key 'high', no retries) and child (key 'low', depending on it); beforeClaim publishes
 * more first (e.g. child's own dependants). later: the held transaction's committed job of key 'low'.
 * All three in queue when given (else the default queue).
 */
export async function deferredDependant(sql: TestDb['sql'], session: () => Promise<LockSession>,
                                        beforeClaim?: (child: string) => Promise<void>,
                                        queue?: string): Promise<{ parent: string; child: string; later: string }> {
  const id = async (text: string, params?: unknown[]) => (await sql<{ id: string }>(text, params))[0]!.id;
  const q = queue === undefined ? '' : `, queue => '${queue.replace(/'/g, "''")}'`;
  const parent = await id(`select jobs.publish('parent', serial_key => 'high', max_retries => 0${q})::text as id`);
  const child = await id(`select jobs.publish('child', serial_key => 'low', depends_on => array[$1::bigint]${q})::text as id`, [parent]);
  await beforeClaim?.(child);
  await sql(`select jobs.consume(5${q})`);
  const holder = await session();
  await holder.query('begin');
  const later = (await holder.query(`select jobs.publish('later', serial_key => 'low'${q})::text as id`)).rows[0].id as string;
  expect(await sql(`select jobs.nack($1::bigint, 'broke') as ok`, [parent])).toEqual([{ ok: true }]);
  await holder.query('commit');
  expect(await sql(`select cancel_requested_at is not null as deferred, attempt from jobs.job_queue where job_id = $1`, [child]))
    .toEqual([{ deferred: true, attempt: 0 }]);
  return { parent, child, later };
}
