-- pgdrain 0021: the database as the clock: the recurring jobs table and using
-- pg_cron where it runs (the tick it runs, jobs.run_schedule: sql/0048).
--
-- Errors: PDC01 cron (a recurrence rule given to pg_cron); 0A000 when pg_cron
-- is needed and not installed, 42501 when it is installed and this role may
-- not use it.

-- Recurring jobs --------------------------------------------------------------

-- One row per schedule. runner 'pg_cron': pg_cron job pgdrain:schedule:<name>
-- runs jobs.run_schedule(name) at each tick. runner 'drains': every claim
-- (jobs.claim_json, jobs.drain_sql, jobs.maintain) publishes the ticks that
-- are due (jobs.publish_due_schedules) and moves next_run_at on.
-- overlap 'skip': a tick publishes nothing while a job of the schedule is
-- active; its jobs carry dedupe key pgdrain:schedule:<name>, so the check is
-- the dedupe key's unique index. tz: the zone whose wall clock cron reads
-- (null: UTC); pg_cron 1.4 reads UTC only, so drains run those. backfill
-- (seconds): the drains publish one job per missed tick of the last
-- `backfill` seconds (null: one job for all the ticks missed); overlap
-- 'allow' and drains only (pg_cron does not backfill). Every job a schedule
-- publishes carries attributes {"schedule": name, "tick": its tick}
-- (jobs.schedule_attributes). serial_key: every job it publishes carries it,
-- so its jobs run one at a time (graphile-worker's crontab ?queue=).
-- dedupe_key, dedupe_mode: every tick publishes with them as jobs.publish
-- takes them (graphile-worker's crontab ?jobKey=&jobKeyMode=): a key of one's
-- choosing, which other publishes may share; overlap 'allow' only (overlap
-- 'skip' gives its jobs a key of its own). group_id, group_tier: every job
-- it publishes carries them, so its queue's group_concurrency caps its
-- ticks' running jobs with the group's others (pg-boss's schedule options).
create table jobs.recurring (
  name         text        primary key,
  cron         text        not null,
  task         text        not null,
  body         jsonb,
  timeout      numeric,
  priority     integer,
  max_retries  integer,
  queue        text,
  runner       text        not null check (runner in ('pg_cron', 'drains')),
  overlap      text        not null default 'allow' check (overlap in ('allow', 'skip')),
  tz           text        check (tz is null or runner = 'drains'),
  backfill     numeric     check (backfill is null or (backfill > 0 and backfill <= 31622400
                                   and runner = 'drains' and overlap = 'allow')),
  serial_key   text,
  dedupe_key   text        check (dedupe_key is null or overlap = 'allow'),
  dedupe_mode  text        check (dedupe_mode is null or dedupe_mode in ('keep', 'keep_waiting', 'replace', 'replace_keep_time')
                                   and dedupe_key is not null),
  group_id     text,
  group_tier   text        check (group_tier is null or group_id is not null),
  -- Null for drains: a recurrence rule with no occurrence left (COUNT,
  -- UNTIL), or a schedule a tick stopped, its next one not computable
  -- (last_error says why: jobs.publish_due_schedules).
  next_run_at  timestamptz check ((runner = 'drains') = (next_run_at is not null)
                                  or runner = 'drains' and (jobs.is_rrule(cron) or last_error is not null)),
  -- The tick a retry is for: a tick whose publish failed (a full queue) is
  -- retried a minute on (next_run_at), and published as this tick.
  retry_tick   timestamptz,
  last_run_at  timestamptz,
  last_job_id  bigint,
  last_error   text,
  skipped_ticks   bigint   not null default 0,  -- ticks overlap 'skip' published nothing for
  last_skipped_at timestamptz,
  created_at   timestamptz not null,
  updated_at   timestamptz not null
);
-- What a claim probes: only drain-run schedules are in it.
create index recurring_due_idx on jobs.recurring (next_run_at) where runner = 'drains';
-- A bounded queue's oldest due tick (jobs.tick_queues): one probe a bounded queue.
create index recurring_queue_due_idx on jobs.recurring ((coalesce(queue, 'default')), next_run_at) where runner = 'drains';

-- When a claim first failed to take a bounded queue's publishers' lock for
-- schedule `schedule`'s tick due at `due` (jobs.tick_queues, sql/0040): its
-- wait grows from then, not from the tick. Read for the schedule's
-- next_run_at only, so a tick published, a backfill that moved on, or a
-- changed schedule has none by construction; jobs.maintain deletes the rest.
-- Not a column of jobs.recurring, no foreign key: a claim's UPDATE held the
-- schedule's row to commit, and, the claim going on to expiry's wait for a
-- serial key, an app transaction holding that key and changing the schedule
-- (jobs.schedule waits for the row) deadlocked with it. No one waits for
-- these rows (a claim adds one only if it can at once).
create table jobs.tick_miss (
  schedule  text        not null,
  due       timestamptz not null,
  missed_at timestamptz not null,
  primary key (schedule, due)
);

-- The attributes of every job a schedule publishes: its name and the tick
-- the job is for, ISO 8601 in UTC to the millisecond (as JS's toISOString).
-- A retry moves the job's scheduled_at, never these: a handler reads its tick
-- on every attempt (graphile-worker puts it in the payload, _cron.ts).
create function jobs.schedule_attributes(p_name text, p_tick timestamptz)
returns jsonb language sql stable as $$
  select jsonb_build_object('schedule', p_name,
                            'tick', to_char(p_tick at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
$$;

-- The dedupe key of a schedule's jobs: an overlap 'skip' schedule's own,
-- else the schedule's dedupe_key (null: none).
create function jobs.schedule_key(r jobs.recurring)
returns text language sql immutable as $$
  select case when r.overlap = 'skip' then 'pgdrain:schedule:' || r.name else r.dedupe_key end
$$;

-- 1 when job p_id carries tick p_tick of schedule p_name (made by it, or a
-- waiting holder a replace gave it), else 0: a holder a keep answered.
create function jobs.tick_made(p_id bigint, p_name text, p_tick timestamptz)
returns integer language sql stable as $$
  select count(*)::integer from jobs.job_queue q where q.job_id = p_id and q.attributes = jobs.schedule_attributes(p_name, p_tick)
$$;

-- Whether another transaction holds dedupe key p_key as a replace publish
-- would wait for it: its replace lock (a replace publish of it not yet
-- committed) or its holder's row (a claim, a settle, a replace); else takes
-- both, as jobs.publish then does, so that publish waits for nothing. A
-- drain's claim publishes replace ticks only when this is false: it waits
-- on no job's row (an ack holding one may wait for a serial key this claim
-- took publishing another tick), and the tick stays due for the next claim.
create function jobs.dedupe_key_busy(p_key text)
returns boolean language plpgsql as $$
begin
  if not pg_try_advisory_xact_lock(736039, hashtext(p_key)) then
    return true;
  end if;
  perform from jobs.job_queue q where q.dedupe_key = p_key for update skip locked;
  return not found and exists (select from jobs.job_queue q where q.dedupe_key = p_key);
end $$;

-- What this role lacks to use pg_cron here, as a GRANT would name it, or
-- null when it lacks nothing (or pg_cron is not installed). On managed
-- PostgreSQL the app role often does not own pg_cron nor have USAGE on
-- schema cron. Called by security definer functions (through those below),
-- it checks their owner. p_run_log: also what maintain needs to prune cron.job_run_details.
create function jobs.pg_cron_lacks(p_run_log boolean default false)
returns text language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
  if not exists (select 1 from pg_extension where extname = 'pg_cron') then
    return null;
  elsif not has_schema_privilege('cron', 'usage') then
    return 'USAGE ON SCHEMA cron';
  elsif not has_table_privilege('cron.job', 'select') then
    return 'SELECT ON cron.job';
  elsif not has_function_privilege('cron.schedule(text, text, text)', 'execute') then
    return 'EXECUTE ON FUNCTION cron.schedule(text, text, text)';
  elsif not has_function_privilege('cron.unschedule(bigint)', 'execute') then
    return 'EXECUTE ON FUNCTION cron.unschedule(bigint)';
  -- Apart: has_table_privilege('select, delete') is true for either one.
  elsif p_run_log and not (has_table_privilege('cron.job_run_details', 'select')
                           and has_table_privilege('cron.job_run_details', 'delete')) then
    return 'SELECT, DELETE ON cron.job_run_details';
  end if;
  return null;
end $$;

-- Whether pg_cron can run this role's jobs in this database: installed (it
-- lives in one database, cron.database_name) and usable by this role.
-- Elsewhere schedules fall back to drains.
create function jobs.has_pg_cron()
returns boolean language sql stable as $$
  select exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') and jobs.pg_cron_lacks() is null
$$;

-- The time zone pg_cron reads schedules in when it is not UTC, else null.
-- pg_cron 1.5 and later read them on the wall clock of cron.timezone (GMT
-- unless set); 1.4 has no such setting and reads UTC. pgdrain's expressions
-- are UTC, so a schedule goes to pg_cron only while this is null.
create function jobs.pg_cron_zone()
returns text language plpgsql stable as $$
declare
  v_zone text := nullif(current_setting('cron.timezone', true), '');
begin
  return jobs.check_tz(v_zone, false);
exception when sqlstate 'PDC03' then
  return v_zone;  -- not a zone name pgdrain takes (an abbreviation): not UTC either
end $$;

-- Raises 0A000 naming the missing extension, or for pg_cron installed but
-- not usable by this role, 42501 naming the privilege it lacks.
create function jobs.require_extension(p_extension text, p_for text, p_else text)
returns void language plpgsql as $$
declare
  v_lacks text := case when p_extension = 'pg_cron' then jobs.pg_cron_lacks() end;
begin
  if v_lacks is not null then
    raise exception 'pg_cron is installed but role % may not use it: % needs %, which it lacks (GRANT % TO %)',
      current_user, p_for, v_lacks, v_lacks, quote_ident(current_user) using errcode = '42501';
  end if;
  raise exception '% is not installed in this database: % needs it (%)', p_extension, p_for, p_else
    using errcode = '0A000';
end $$;

-- Removes the pg_cron job of that name if there is one; true if there was.
-- p_known: a pg_cron job was recorded for it (runner pg_cron), so a role
-- that may no longer use pg_cron gets 42501 instead of leaving that job to
-- fail at every tick while the schedule looks removed.
create function jobs.pg_cron_unschedule(p_jobname text, p_known boolean default false)
returns boolean language plpgsql as $$
declare
  v_id bigint;
  v_lacks text;
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') then
    return false;
  end if;
  v_lacks := jobs.pg_cron_lacks();
  if v_lacks is not null and p_known then
    raise exception 'cannot remove pg_cron job %: role % lacks % (GRANT % TO %), and the job would go on running',
      p_jobname, current_user, v_lacks, v_lacks, quote_ident(current_user) using errcode = '42501';
  elsif v_lacks is not null then
    return false;
  end if;
  execute 'select jobid from cron.job where jobname = $1 and username = current_user' into v_id using p_jobname;
  if v_id is null then
    return false;
  end if;
  execute 'select cron.unschedule($1)' using v_id;
  return true;
end $$;

-- Creates or replaces pg_cron job p_jobname; p_cron as pg_cron takes it
-- (jobs.cron_text). Refuses a recurrence rule (PDC01 cron): pg_cron reads cron only.
-- A tick's command (jobs.run_schedule, jobs.run_http_drain) opens with 'set
-- transaction isolation level read committed; ': pg_cron runs a command in
-- one transaction (a multi-statement one too, with or without
-- cron.use_background_workers), at the database's or role's
-- default_transaction_isolation, and a tick at REPEATABLE READ or
-- SERIALIZABLE that met its schedule's row changed after its snapshot
-- failed 40001, not retried: its tick lost. Not maintenance's CALL (a
-- procedure that commits may not follow another statement) nor VACUUM.
create function jobs.pg_cron_schedule(p_jobname text, p_cron text, p_command text)
returns bigint language plpgsql as $$
declare
  v_id bigint;
begin
  if jobs.is_rrule(p_cron) then
    perform jobs.raise_invalid('PDC01', 'cron', 'pg_cron runs cron expressions only, not a recurrence rule (FREQ=...): give a cron expression');
  end if;
  execute 'select cron.schedule($1, $2, $3)' into v_id using p_jobname, jobs.cron_text(p_cron), p_command;
  return v_id;
end $$;
