import { ValidationError } from './errors.js';

// What an option of pg-boss's send() or graphile-worker's addJob() is here:
// a publish given one (publish(), publishBulk(), POST /jobs) names it unknown,
// and says which pgdrain option does its work (docs/migrating.md "Coming from pg-boss or
// graphile-worker" has the rest).

const PEER_OPTIONS: Readonly<Record<string, string>> = {
  retryLimit: "pg-boss's retryLimit is maxRetries, the same count",
  maxAttempts: "graphile-worker's maxAttempts is maxRetries = maxAttempts - 1",
  startAfter: "pg-boss's startAfter is runAt (a Date) or delaySeconds",
  singletonKey: "pg-boss's singletonKey is dedupeKey",
  singletonSeconds: "pg-boss's singletonSeconds is throttleSeconds, with a dedupeKey",
  jobKey: "graphile-worker's jobKey is dedupeKey with dedupeMode: 'replace'",
  jobKeyMode: "graphile-worker's jobKeyMode is dedupeMode",
  queueName: "graphile-worker's queueName is serialKey",
  // pgdrain's retryBackoff defaults to true, pg-boss's to false: a retryDelay ported alone would grow.
  retryDelay: "pg-boss's retryDelay is retryDelaySeconds, with retryBackoff: false for its fixed delay (pgdrain's retryBackoff "
    + "defaults to true); with its retryBackoff: true, retryDelaySeconds is twice its retryDelay",
  retryDelayMax: "pg-boss's retryDelayMax is retryDelayMaxSeconds",
  expireInSeconds: "pg-boss's expireInSeconds is timeoutSeconds",
  retentionSeconds: "pg-boss's retentionSeconds is expiresInSeconds",
  // pg-boss before 10 took it on send(); 12 reports it on a job only.
  keepUntil: "pg-boss's keepUntil is expiresAt: a job still waiting (to start or to retry) then ends as expired",
  flags: "graphile-worker's flags are attributes: { flag: true }",
  deleteAfterSeconds: "pg-boss's deleteAfterSeconds is maintain()'s retentionSeconds, for every queue",
  heartbeatSeconds: "pg-boss's heartbeatSeconds is defineTask()'s heartbeatSeconds, or ctx.extendLease()",
  singletonNextSlot: "pg-boss's singletonNextSlot: none; dedupeKey with dedupeMode: 'replace_keep_time' and delaySeconds "
    + 'keeps one waiting job per key, the latest body',
  id: "pg-boss's id: none, the database numbers jobs; a dedupeKey makes a publish sent again answer the same job",
};

// Of pg-boss's work() and graphile-worker's run(): a drain's options.
const DRAIN_OPTIONS: Readonly<Record<string, string>> = {
  localConcurrency: "pg-boss's localConcurrency is concurrency",
  teamSize: "pg-boss's teamSize is concurrency",
  batchSize: "pg-boss's batchSize is drain()'s first argument",
  pollingIntervalSeconds: "pg-boss's pollingIntervalSeconds is pollMs, in milliseconds, with lingerMs to wait on an empty queue",
  pollInterval: "graphile-worker's pollInterval is pollMs, with lingerMs to wait on an empty queue",
  forbiddenFlags: "graphile-worker's forbiddenFlags is exclude: [{ flag: true }]",
  groupConcurrency: "pg-boss's groupConcurrency is queues.create()'s groupConcurrency, the queue's cap across every drain",
  heartbeatRefreshSeconds: "pg-boss's heartbeatRefreshSeconds: none; defineTask()'s heartbeatSeconds beats every half of it",
};

// Of pg-boss's work(name, options, handler): defineTask()'s options (the handler's own; the drain's are drain()'s).
const TASK_OPTIONS: Readonly<Record<string, string>> = {
  batchSize: "pg-boss's batchSize is batch: { maxSize } (the handler then takes an array of { body, job }), "
    + "and drain()'s first argument",
  includeMetadata: "pg-boss's includeMetadata: none needed, ctx.job has the job's fields",
  perJobResults: "pg-boss's perJobResults: none needed, a batch handler answers one result or Error per job",
  heartbeatRefreshSeconds: DRAIN_OPTIONS.heartbeatRefreshSeconds!,
  localConcurrency: "pg-boss's localConcurrency is drain()'s concurrency",
  groupConcurrency: DRAIN_OPTIONS.groupConcurrency!,
  // pollMs alone is unused: a drain polls only while it lingers.
  pollingIntervalSeconds: "pg-boss's pollingIntervalSeconds is drain()'s pollMs, in milliseconds, with lingerMs to wait on an empty queue",
};

// Of pg-boss's schedule(name, cron, data, options): a schedule's spec.
const SCHEDULE_OPTIONS: Readonly<Record<string, string>> = {
  data: "pg-boss's data is body",
  retryLimit: PEER_OPTIONS.retryLimit!,
  singletonKey: PEER_OPTIONS.singletonKey!,
  expireInSeconds: PEER_OPTIONS.expireInSeconds!,
  jobKey: PEER_OPTIONS.jobKey!,
  jobKeyMode: PEER_OPTIONS.jobKeyMode!,
  queueName: "graphile-worker's crontab queue is serialKey",
  maxAttempts: PEER_OPTIONS.maxAttempts!,
  backfillPeriod: "graphile-worker's backfillPeriod (milliseconds) is backfillSeconds, in seconds",
  key: "pg-boss's key: none, name is the schedule's own (task names its handler), one schedule per name",
};

// Of pg-boss's findJobs(name, options): listJobs()'s filter.
const LIST_OPTIONS: Readonly<Record<string, string>> = {
  data: "pg-boss's data is body (containment, as data)",
  id: "pg-boss's id is ids: [id]",
  queued: "pg-boss's queued is state: 'pending' or 'scheduled', one a call",
  key: "pg-boss's key: none; select * from jobs.all where dedupe_key = the key",
  after: "pg-boss's after is before: pages go newest first here",
};

// Of graphile-worker's rescheduleJobs(ids, options): reschedule()'s options.
const RESCHEDULE_OPTIONS: Readonly<Record<string, string>> = {
  maxAttempts: PEER_OPTIONS.maxAttempts!,
};

// Of new PgBoss(options) and graphile-worker's run(options): createQueue()'s options.
const CREATE_OPTIONS: Readonly<Record<string, string>> = {
  schema: "pg-boss's and graphile-worker's schema: none, pgdrain's is always jobs",
  max: "pg-boss's max is driver: pgDriver(url, { max })",
  maxPoolSize: "graphile-worker's maxPoolSize is driver: pgDriver(url, { max })",
  pgPool: "graphile-worker's pgPool is driver: pgDriver(pool)",
  taskList: "graphile-worker's taskList is tasks",
  taskDirectory: "graphile-worker's taskDirectory is tasks: a module's exports (import * as tasks)",
  concurrency: "graphile-worker's concurrency is drain: { concurrency }",
  pollInterval: "graphile-worker's pollInterval is drain: { pollMs }, with lingerMs to wait on an empty queue",
};

// Of pg-boss's constructor: migrate()'s options.
const MIGRATE_OPTIONS: Readonly<Record<string, string>> = { schema: CREATE_OPTIONS.schema! };

// Of pg-boss's createQueue(name, options): queues.create's options.
const QUEUE_OPTIONS: Readonly<Record<string, string>> = {
  retryLimit: PEER_OPTIONS.retryLimit!,
  retryDelay: PEER_OPTIONS.retryDelay!,
  retryDelayMax: PEER_OPTIONS.retryDelayMax!,
  expireInSeconds: PEER_OPTIONS.expireInSeconds!,
  retentionSeconds: PEER_OPTIONS.retentionSeconds!,
  deleteAfterSeconds: PEER_OPTIONS.deleteAfterSeconds!,
  heartbeatSeconds: PEER_OPTIONS.heartbeatSeconds!,
  policy: "pg-boss's policy singleton is maxRunning: 1; short, stately and exclusive are a publish's dedupeKey and dedupeMode",
  partition: "pg-boss's partition: none needed, every queue's jobs share jobs.job_queue",
  warningQueueSize: "pg-boss's warningQueueSize: none; maxSize refuses a publish past that many waiting jobs, queueSize() counts them",
  notify: "pg-boss's notify: none needed, every publish NOTIFYs pgdrain_queued, which wakes a lingering drain (lingerMs)",
};

// Of pg-boss's work() options sent as POST /drain's fields (the HTTP drain's own names).
const HTTP_DRAIN_OPTIONS: Readonly<Record<string, string>> = {
  pollingIntervalSeconds: DRAIN_OPTIONS.pollingIntervalSeconds!,
  pollInterval: DRAIN_OPTIONS.pollInterval!,
  forbiddenFlags: DRAIN_OPTIONS.forbiddenFlags!,
};

// Of pg-boss's insert([{ name, data }]) and graphile-worker's addJobs([{ identifier, payload }]):
// a bulk job's own fields (publishBulk's { task, body, ...options }).
const JOB_FIELDS: Readonly<Record<string, string>> = {
  name: "pg-boss's name is task",
  data: "pg-boss's data is body",
  identifier: "graphile-worker's identifier is task",
  payload: "graphile-worker's payload is body",
};

/** Which call's options a refusal hints for: each names only options that call takes. */
export type PeerCall = 'publish' | 'drain' | 'schedule' | 'queue' | 'job' | 'task' | 'list' | 'reschedule' | 'create' | 'migrate'
  | 'http-drain';
const HINTS: Readonly<Record<PeerCall, Readonly<Record<string, string>>>> = {
  publish: { ...PEER_OPTIONS, db: "pg-boss's db is queue.using(db).publish(…), or publish(db, …)" }, drain: DRAIN_OPTIONS, schedule: SCHEDULE_OPTIONS, queue: QUEUE_OPTIONS,
  job: { ...PEER_OPTIONS, ...JOB_FIELDS }, task: TASK_OPTIONS, list: LIST_OPTIONS, reschedule: RESCHEDULE_OPTIONS,
  create: CREATE_OPTIONS, migrate: MIGRATE_OPTIONS, 'http-drain': HTTP_DRAIN_OPTIONS,
};

/** What the pg-boss or graphile-worker job fields among job's keys (name, data, …) are here, '; '-joined; '' for none. */
export function jobFieldHints(job: object): string {
  return Object.keys(job).flatMap((k) => (Object.hasOwn(JOB_FIELDS, k) ? JOB_FIELDS[k]! : [])).join('; ');
}

/** What a pg-boss or graphile-worker option `key` of `call` is here, or undefined when it is none of theirs. */
export function peerHint(key: PropertyKey, call: PeerCall = 'publish'): string | undefined {
  const table = HINTS[call];
  return typeof key === 'string' && Object.hasOwn(table, key) ? table[key] : undefined;
}

/**
 * What an unknown field key of job (a POST /jobs job) is here (a publish option's, or a job field's: data is
 * body), or undefined: `options`, the TS call's
 * third argument sent as { task, body, options: { … } }, says the options are the job's own fields.
 */
export function jobFieldHint(key: string, job: unknown): string | undefined {
  if (key !== 'options') return peerHint(key, 'job');
  const options = (job as { options?: unknown } | undefined)?.options;
  const keys = typeof options === 'object' && options !== null && !Array.isArray(options) ? Object.keys(options) : [];
  return 'a job\'s options are its own fields, beside "task" and "body", not an "options" object: '
    + (keys.length ? `move ${keys.slice(0, 3).map((k) => `"${k}"`).join(', ')}${keys.length > 3 ? ', …' : ''} up` : 'give them at its top level');
}

/**
 * `unknown option "k"` for keys; with peerHints (the call whose options they are), saying what a pg-boss
 * or graphile-worker option among them is here, from that call's own table: a hint names only an option
 * the same call takes (a drain's or a list's queueName is its queue, not publish's serialKey).
 */
export function unknownOptions(keys: readonly PropertyKey[], peerHints: PeerCall | false): string {
  const named = keys.map((k) => JSON.stringify(k)).join(', ');
  const hints = peerHints === false ? [] : keys.flatMap((k) => peerHint(k, peerHints) ?? []);
  return `unknown option ${named}${hints.length > 0 ? ` (${hints.join('; ')})` : ''}`;
}

/**
 * A call's options object, refused (ValidationError naming options) when not
 * an object or holding a key not in `known`, with `call`'s peer hints: not
 * ignored, a misspelt or ported option would change nothing, silently.
 */
export function refuseUnknownOptions(options: unknown, known: ReadonlySet<string>, call: PeerCall): void {
  if (typeof options !== 'object' || options === null) throw new ValidationError('options', 'must be an object');
  const unknown = Object.keys(options).filter((k) => !known.has(k));
  if (unknown.length > 0) throw new ValidationError('options', unknownOptions(unknown, call));
}
