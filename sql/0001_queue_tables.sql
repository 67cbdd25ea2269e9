-- pgdrain 0001: the queue tables: queues, waiting and running jobs, ended
-- jobs, dependencies.
--
-- jobs.job_queue holds pending and running jobs; jobs.job holds ended ones.
-- A job is pending when lease_until is null, running while lease_until is in
-- the future, and expired once lease_until has passed without an ack.
-- (job_id, attempt) identifies one delivery: attempt grows by one on every
-- claim, so a late ack from a drain whose lease expired and whose job was
-- handed out again cannot settle the newer delivery.

-- Named queues. Every job belongs to one ('default' unless told); a drain
-- consumes one queue. max_size (null = unbounded) caps the jobs waiting in it
-- (backpressure); a paused queue hands out nothing until resumed. The
-- default_* columns fill a job's timeout, priority and max_retries when its
-- publish gives none (null: the global 60 s, 0, 3); jobs.create_queue checks them.
-- dead_letter names the queue a job of this one is copied to when it fails
-- for good (jobs.route_dead_letters, sql/0008); the key keeps that queue.
-- retry_* are the queue's retry policy (jobs.queue_backoff, sql/0007): the
-- base delay in seconds, exponential (null or true) or fixed (false), and the
-- cap; with all three null the queue's retries wait jobs.backoff(attempt).
-- max_running (null = unlimited) caps its running jobs across every claim
-- (jobs.pick, sql/0011). expire_in (null = never) gives a job published
-- without expires_at one this many seconds after its scheduled time.
-- group_concurrency (null = unlimited) caps the running jobs of each group
-- (a job's group_id) across every claim; group_tiers ({"tier": n}) gives
-- the jobs of a tier (a job's group_tier) their own cap (jobs.pick, sql/0011).
create table jobs.queue (
  name                text        primary key,
  max_size            integer,
  paused              boolean     not null default false,
  created_at          timestamptz not null default now(),
  default_timeout     numeric,
  default_priority    integer,
  default_max_retries integer,
  dead_letter         text        references jobs.queue (name),
  retry_delay         numeric,
  retry_backoff       boolean,
  retry_delay_max     numeric,
  max_running         integer,
  expire_in           numeric,
  group_concurrency   integer,
  group_tiers         jsonb
);
insert into jobs.queue (name) values ('default');

create table jobs.job_queue (
  job_id       bigint generated always as identity primary key,
  task         text        not null,
  body         jsonb,
  -- Finite: the claim orders and answers by it (an infinite one has no epoch).
  scheduled_at timestamptz not null constraint job_queue_scheduled_at_finite check (isfinite(scheduled_at)),
  timeout      numeric     not null,
  priority     integer     not null,
  max_retries  integer     not null,
  attempt      integer     not null default 0,
  lease_until  timestamptz,
  started_at   timestamptz,
  created_at   timestamptz not null,
  last_error   text,
  queue        text        not null default 'default',
  -- At most one job in job_queue per dedupe_key (see job_queue_dedupe_idx).
  dedupe_key   text,
  -- Jobs sharing a serial_key run one at a time in job_id order: only the
  -- key's head has serial_wait = false.
  serial_key   text,
  serial_wait  boolean     not null default false,
  -- Dependencies not yet succeeded (rows in jobs.dependency).
  waiting_deps integer     not null default 0,
  attributes   jsonb,
  worker_id    text,
  -- The drain call whose claim leased the job's delivery (jobs.claim_json's
  -- holder; null for other claims): that drain's own claims leave the lease
  -- to it once passed (its timer settles the job, jobs.expire_due), every
  -- other expiry takes it back. Only a leased row has one (the check
  -- job_queue_lease_holder_leased, below): every claim sets it, and every
  -- update that ends a delivery but keeps the row (a nack's retry or a
  -- release in jobs.settle_arrays, jobs.expire_due's retry) clears it in
  -- the same statement. So a passed lease written on a waiting
  -- job (a cascade's deferred dependants, jobs.after_end; jobs.cancel_bulk's
  -- deferred heads) has none, and every claim ends it.
  lease_holder bigint,
  cancel_requested_at timestamptz,
  cancel_reason text,
  -- The job's own retry policy (jobs.publish's retry_*), as jobs.queue's:
  -- with any of the three set it wins over its queue's (null: it has none).
  retry_delay     numeric,
  retry_backoff   boolean,
  retry_delay_max numeric,
  -- Not started by then, it never runs: the next claim (or jobs.maintain)
  -- ends it as a failure (jobs.expire). A running job is not affected.
  expires_at   timestamptz,
  -- The job's own dead-letter queue (jobs.publish's dead_letter): failing for
  -- good, it is copied there, not to its queue's (jobs.route_dead_letters).
  -- No foreign key (one more check per publish): jobs.delete_queue refuses a
  -- queue an active job names; routing falls back to the queue's if it is gone.
  dead_letter  text,
  -- The job's group (jobs.publish's group_id) and its tier: its queue's
  -- group_concurrency (or the tier's cap in group_tiers) caps how many jobs
  -- of the group run at once (jobs.pick, sql/0011). Null: not limited.
  group_id     text,
  group_tier   text,
  -- Its releases with a reason in a row (claimed, never started: jobs.settle_arrays), the count its
  -- last_error's first line shows (jobs.release_error) and jobs.unstarted_bound reads: a column, as
  -- no error text a user writes (a nack's, a dead letter's) can fake it. Set only by the updates that
  -- end a delivery and keep the row (a release, a nack's retry, an expiry's) and by jobs.reschedule given an
  -- attempt: claims and acks never write it.
  unstarted    smallint    not null default 0,
  -- Its snoozes in a row (a release with retry_at, no reason: SnoozeJob, ctx.rateLimit), the count a
  -- snooze's line in last_error shows (jobs.release_error), a column for the same reason. Set by the
  -- same updates; a release with a reason, a nack's retry, an expiry's, jobs.reschedule given an
  -- attempt and a replace publish (jobs.replace_waiting_job) set it to 0.
  snoozed      integer     not null default 0,
  -- lease_holder's rule, enforced: an update that ends a lease but keeps
  -- its holder fails (23514) instead of leaving a stale token behind.
  constraint job_queue_lease_holder_leased check (lease_holder is null or lease_until is not null)
)
-- Every job leaves dead tuples here, and every claim steps over the claim
-- index's dead entries until vacuum removes them: a queue slows down between
-- vacuums, and a throttled vacuum lets the table bloat. The live rows are
-- few (the backlog), so an unthrottled vacuum of this one table is short.
-- To throttle it again: alter table jobs.job_queue reset (autovacuum_vacuum_cost_delay).
with (autovacuum_vacuum_cost_delay = 0);

-- Claim order for claimable jobs of a queue; running and blocked jobs are not
-- in it, so a claim never walks over them (a slow serial key or a long
-- dependency chain costs other jobs nothing).
create index job_queue_pending_idx on jobs.job_queue (queue, priority desc, scheduled_at, job_id)
  where lease_until is null and waiting_deps = 0 and not serial_wait;
-- Finds expired leases without scanning pending jobs.
create index job_queue_lease_idx on jobs.job_queue (lease_until)
  where lease_until is not null;
-- Waiting jobs that have an expiry (jobs.expire ends those past it): every
-- claim probes it once, so plain jobs, running ones and blocked ones (which
-- expire once unblocked) are not in it.
create index job_queue_expires_idx on jobs.job_queue (expires_at)
  where expires_at is not null and lease_until is null and waiting_deps = 0;
-- The running jobs of groups (and dependants a cascade deferred, attempt 0,
-- which the count leaves out): a group-limited claim counts them by group
-- (jobs.group_running). Jobs without a group, and waiting ones, are not in
-- it. A CASE, not "lease_until is not null": with that, the count could read
-- the lease index (every running job of every queue, and the dead entries
-- of those settled since the last vacuum), which the planner took for the
-- smaller; only this index's own expression proves this index.
create index job_queue_group_running_idx on jobs.job_queue (queue, group_id)
  where group_id is not null and case when lease_until is null then false else true end;
-- Given a root page now: PostgreSQL caches a btree's metapage only once it
-- has one, so until then the planner reads it for every statement it plans
-- on this table (8 buffers per custom-planned claim, test/plans.test.ts), and
-- the claim's probe reads it too. An entry put in and taken out makes the
-- root, which a btree never removes. (Id 0: the identity sequence is not used.)
-- A second, leased and grouped (id -1), roots the lease index and the index
-- of grouped leases (each one's metapage was a buffer per planned statement).
insert into jobs.job_queue (job_id, task, scheduled_at, timeout, priority, max_retries, created_at, expires_at,
                            lease_until, group_id)
overriding system value values (0, 'pgdrain:root', 'epoch', 1, 0, 0, 'epoch', 'epoch', null, null),
                               (-1, 'pgdrain:root', 'epoch', 1, 0, 0, 'epoch', null, 'epoch', 'pgdrain:root');
delete from jobs.job_queue where job_id in (0, -1);
-- Partial: plain jobs (all three null) are in none of these.
create unique index job_queue_dedupe_idx on jobs.job_queue (dedupe_key) where dedupe_key is not null;
create index job_queue_serial_idx on jobs.job_queue (serial_key, job_id) where serial_key is not null;
create index job_queue_attributes_idx on jobs.job_queue using gin (attributes jsonb_path_ops)
  where attributes is not null;

create table jobs.job (
  job_id       bigint      primary key,
  task         text        not null,
  body         jsonb,
  status       text        not null check (status in ('success', 'failure', 'cancelled')),
  result       jsonb,
  -- The last error: why it failed or was cancelled, or (for a success) what
  -- the attempt before the successful one reported.
  error        text,
  attempts     integer     not null,
  priority     integer     not null,
  max_retries  integer     not null,
  timeout      numeric     not null,
  scheduled_at timestamptz not null,
  created_at   timestamptz not null,
  started_at   timestamptz,
  ended_at     timestamptz not null,
  duration_ms  double precision,
  queue        text        not null default 'default',
  dedupe_key   text,
  serial_key   text,
  attributes   jsonb,
  worker_id    text,
  -- Kept for jobs.redrive and dead letters (jobs.job_queue's retry_*).
  retry_delay     numeric,
  retry_backoff   boolean,
  retry_delay_max numeric,
  -- The job's own dead-letter queue (jobs.job_queue's), null: its queue's
  -- if any. Every end path carries it: jobs.route_dead_letters reads it
  -- here, and jobs.redrive puts it back with the job.
  dead_letter     text,
  -- The waiting job's expiry (jobs.job_queue's), kept so a job's history
  -- answers it (getJob, jobs.all); every end path carries it. jobs.redrive
  -- does not put it back: a job redriven runs now, whatever its old expiry.
  expires_at      timestamptz,
  group_id        text,
  group_tier      text
);
-- Retention and "recent" queries. History is written once per job, so every
-- index here is paid by every job: per-task reports scan by ended_at instead.
create index job_ended_idx on jobs.job (ended_at);
-- Dead letters: failures only, so the index stays small.
create index job_failure_idx on jobs.job (ended_at) where status = 'failure';

-- The jobs claims of a queue with max_running handed out (jobs.pick), to
-- count that queue's running jobs without an index of every queue's: one
-- by queue on job_queue costs every claim of every queue an entry (2 µs per
-- job drained, 10%, measured). Only such claims write here; no other path
-- does: a row counts while its job still holds a lease (one probe of the
-- primary key each), and the next claim of the queue deletes the others.
create table jobs.running_slot (
  job_id bigint primary key,
  queue  text   not null
)
-- Few live rows, a dead one per job of such a queue: as jobs.job_queue.
with (autovacuum_vacuum_cost_delay = 0);
create index running_slot_queue_idx on jobs.running_slot (queue);
revoke all on jobs.running_slot from public;

-- Job job_id runs only after depends_on succeeded. A row lives while
-- depends_on is active; it is deleted when depends_on ends.
create table jobs.dependency (
  depends_on bigint not null,
  job_id     bigint not null,
  primary key (depends_on, job_id)
);
-- A dependant's own rows, by job_id: what ending it by hand (jobs.end_waiting,
-- jobs.lock_jobs: jobs.cancel, cancel_bulk, fail, complete, delete_jobs,
-- purge_queue) and a redrive of a cancelled dependant delete or lock. The
-- primary key leads with depends_on, so without this each of those calls
-- read the whole table: every blocked job waiting anywhere. Only jobs with
-- dependencies pay for it (one more entry per dependency row).
create index dependency_job_idx on jobs.dependency (job_id);

create type jobs.bulk_job as (
  task         varchar,
  body         jsonb,
  scheduled_at timestamptz,
  timeout      numeric,
  priority     integer,
  max_retries  integer
);
