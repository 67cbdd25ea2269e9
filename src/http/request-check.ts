import type * as z from 'zod/mini';
import { ValidationError } from '../errors.js';
import { jobFieldHint, jobFieldHints, type PeerCall, peerHint } from '../peer-options.js';

// A request's first issue (of a body, a query string, the app's limits) as a
// ValidationError naming the field as the caller wrote it (`jobs[2].timeoutSeconds`),
// with what a pg-boss or graphile-worker field of a job is here.

/** Why a job of a bulk takes no such field. */
const BULK_TAKES_NO = {
  queue: 'the bulk\'s "queue" applies to all its jobs',
  dependsOn: 'publish a job with dependencies one per request',
  throttleSeconds: 'publish a throttled job one per request (its key\'s window is locked and opened one job at a time)',
};

/** Parses with a schema; the first issue becomes a ValidationError naming the field as the caller wrote it.
 * peerHintsAt: where a job's options are (its path, as `.jobs[2]`): an unknown field there that is a
 * pg-boss or graphile-worker publish option says which option does its work, as publish() does.
 * call: whose hints an unknown field at the top level gets (POST /drain's: pg-boss's pollingIntervalSeconds). */
export function check<S extends z.ZodMiniType>(schema: S, value: unknown, prefix: string, peerHintsAt?: RegExp,
                                               call?: PeerCall): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const pathOf = (keys: readonly PropertyKey[]) => prefix + keys.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
  const at = (keys: readonly PropertyKey[]) => keys.reduce<unknown>((o, p) => (o as Record<PropertyKey, unknown>)[p], value);
  let path = pathOf(issue.path);
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    // The first key names the field; the others follow, each with its hint: one 400 says them all.
    const jobPath = path;
    const job = at(issue.path);
    const why = (key: string) => {
      const hint = peerHintsAt?.test(jobPath) ? jobFieldHint(key, job)
        : call !== undefined && issue.path.length === 0 ? peerHint(key, call) : undefined;
      return /^\.jobs\[\d+\]$/.test(jobPath) && Object.hasOwn(BULK_TAKES_NO, key)
        ? `a job of a bulk publish takes no ${key}: ${BULK_TAKES_NO[key as keyof typeof BULK_TAKES_NO]}`
        : hint ? `unknown field (${hint})` : 'unknown field';
    };
    const [first, ...more] = issue.keys as string[];
    path += `.${first}`;
    message = why(first!) + (more.length ? `; also ${more.map((k) => `${k}: ${why(k)}`).join('; ')}` : '');
  } else if (issue.code === 'invalid_type' && /received undefined$/.test(message)) {
    // A job's task, missing from pg-boss's { name, data } or graphile-worker's { identifier, payload }: which
    // fields are task and body (as publishBulk says). Looked up on this refusal only.
    const job = issue.path.slice(0, -1);
    const peers = issue.path.at(-1) === 'task' && peerHintsAt?.test(pathOf(job)) ? jobFieldHints(at(job) as object) : '';
    message = peers ? `is required (${peers})` : 'is required';
  } else if (issue.code === 'invalid_type' && message.startsWith('Invalid input')) {
    message = `must be ${/^[aeiou]/.test(issue.expected) ? 'an' : 'a'} ${issue.expected}`;
  }
  throw new ValidationError(path.replace(/^\./, '') || 'body', message);
}
