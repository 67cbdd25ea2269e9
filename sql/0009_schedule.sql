-- pgdrain 0009: the database as the clock. Recurring jobs (run by pg_cron or,
-- where it is missing, by drains) and maintenance.
--
-- Errors: PDC02 name (a schedule), PDC03 another argument (the COLUMN field
-- names it); 0A000 when pg_cron is needed and not installed, 42501 when it is
-- installed and this role may not use it.

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
  next_run_at  timestamptz check ((runner = 'drains') = (next_run_at is not null)),
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

-- What this role lacks to use pg_cron here, as a GRANT would name it, or
-- null when it lacks nothing (or pg_cron is not installed). On managed
-- PostgreSQL the app role often does not own pg_cron nor have USAGE on
-- schema cron. Called by the security definer functions below, it checks
-- their owner. p_run_log: also what maintain needs to prune cron.job_run_details.
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

-- Creates or replaces pg_cron job p_jobname; p_cron as pg_cron takes it (jobs.cron_text).
create function jobs.pg_cron_schedule(p_jobname text, p_cron text, p_command text)
returns bigint language plpgsql as $$
declare
  v_id bigint;
begin
  execute 'select cron.schedule($1, $2, $3)' into v_id using p_jobname, jobs.cron_text(p_cron), p_command;
  return v_id;
end $$;

-- Creates or replaces the schedule `name`: at each tick of `cron` (UTC, or
-- on the wall clock of time zone `tz`), a job of `task` with `body` and these
-- options is published. Idempotent: calling it again with the same arguments
-- changes nothing (a pending tick is kept). runner: null picks pg_cron when
-- it is installed in this database, this role may use it and tz is UTC,
-- else drains; 'pg_cron' or 'drains' forces one. overlap: 'allow' (null) or
-- 'skip': no job while one of this schedule is active. backfill: seconds
-- (> 0, at most 366 days) within which the drains publish one job for each
-- tick they missed (null: one job for all of them); drains and overlap
-- 'allow' only. serial_key: the serial key of every job it publishes (a
-- tick's job waits while an earlier one with that key is active); a
-- change applies from the next tick. dedupe_key, dedupe_mode: each tick
-- publishes with them as jobs.publish does (keep, null: a tick while a job
-- holds the key publishes nothing and records the holder as last_job_id;
-- keep_waiting: so does one not started yet, but a running holder (or one
-- waiting to retry) lets the tick's job take the key; replace: the waiting holder takes the tick; replace_keep_time: it takes
-- the tick and keeps its time); overlap 'allow' only; with backfill, the
-- missed ticks are published oldest first, so the key's job is the first
-- of them (keep) or the latest (replace). group_id, group_tier: the group
-- (and tier) of every job it publishes, as jobs.publish's (PD019); a change
-- applies from the next tick. Returns the runner.
create function jobs.schedule(
  name        text,
  cron        text,
  task        text,
  body        jsonb       default null,
  timeout     numeric     default null,
  priority    integer     default null,
  max_retries integer     default null,
  queue       text        default null,
  runner      text        default null,
  now         timestamptz default null,
  overlap     text        default null,
  tz          text        default null,
  backfill    numeric     default null,
  serial_key  text        default null,
  dedupe_key  text        default null,
  dedupe_mode text        default null,
  group_id    text        default null,
  group_tier  text        default null
) returns text language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(schedule.now, pg_catalog.now());
  v_next timestamptz;
  v_runner text;
  v_tz text;
  v_old text;
  v_old_cron text;
  v_old_tz text;
  v_last timestamptz;
  v_error text;       -- the row's last_error before this call
  v_kept_error text;  -- why the old expression's ticks could not be published now
  v_old_next timestamptz;
  v_old_backfill numeric;
  -- Stored as pg_cron is given it: trimmed, an @ name in lower case.
  v_cron text := jobs.cron_text(schedule.cron);
begin
  -- 46: pg_cron's job names hold 63 bytes, 17 of them 'pgdrain:schedule:'.
  if schedule.name is null or schedule.name !~ '^[A-Za-z0-9_.:-]{1,46}$' then
    perform jobs.raise_invalid('PDC02', 'name', format(
      'must be 1 to 46 letters, digits, _ . : or -, got %s', coalesce(left(quote_literal(schedule.name), 80), 'null')));
  end if;
  v_next := jobs.cron_next(v_cron, v_now);
  v_tz := jobs.check_tz(schedule.tz);
  if v_tz is not null then
    v_next := jobs.cron_tick(v_cron, v_now, v_tz);
  end if;
  perform jobs.check_task(schedule.task);
  -- Refused now rather than at every tick (a tick of a task disallowed
  -- since fails, recorded in last_error).
  if schedule.task like 'sql:%' then
    perform jobs.check_sql_task(schedule.task);
  end if;
  perform jobs.check_options(schedule.timeout, schedule.priority, schedule.max_retries);
  perform jobs.check_key(schedule.serial_key, 'PD012', 'serial_key');
  perform jobs.check_key(schedule.dedupe_key, 'PD011', 'dedupe_key');
  -- As jobs.publish words them: refused now rather than at every tick.
  if schedule.dedupe_mode is not null and schedule.dedupe_mode not in ('keep', 'keep_waiting', 'replace', 'replace_keep_time') then
    perform jobs.raise_invalid('PD011', 'dedupe_mode',
      format('must be keep, keep_waiting, replace or replace_keep_time, got %s', left(quote_literal(schedule.dedupe_mode), 80)));
  elsif schedule.dedupe_mode is not null and schedule.dedupe_key is null then
    perform jobs.raise_invalid('PD011', 'dedupe_mode', 'needs a dedupe_key (the key whose job it keeps or replaces)');
  end if;
  perform jobs.check_group(schedule.group_id, schedule.group_tier);
  if not exists (select 1 from jobs.queue q where q.name = coalesce(schedule.queue, 'default')) then
    perform jobs.raise_invalid('PD009', 'queue', format('no queue named %s', quote_literal(schedule.queue)));
  end if;
  if schedule.runner is not null and schedule.runner not in ('pg_cron', 'drains') then
    perform jobs.raise_invalid('PDC03', 'runner', format('must be pg_cron, drains or null (pick), got %s', quote_literal(schedule.runner)));
  end if;
  if schedule.overlap is not null and schedule.overlap not in ('allow', 'skip') then
    perform jobs.raise_invalid('PDC03', 'overlap', format('must be allow, skip or null (allow), got %s',
      left(quote_literal(schedule.overlap), 80)));
  elsif schedule.overlap = 'skip' and schedule.dedupe_key is not null then
    perform jobs.raise_invalid('PD011', 'dedupe_key',
      'cannot be given with overlap ''skip'', whose jobs carry a dedupe key of their own (pgdrain:schedule:<name>): '
      'use overlap ''allow'' (or null) with dedupe_mode keep for one job at a time under your key');
  end if;
  if v_tz is not null and schedule.runner = 'pg_cron' then
    perform jobs.raise_invalid('PDC03', 'tz', format(
      'pg_cron 1.4 reads schedules in UTC only: a schedule in %s needs runner => ''drains'' (or no runner: drains then)',
      quote_literal(v_tz)));
  end if;
  -- 31622400: 366 days. NaN is greater than any number: refused here too.
  if schedule.backfill is not null and not (schedule.backfill > 0 and schedule.backfill <= 31622400) then
    perform jobs.raise_invalid('PDC03', 'backfill', format(
      'must be a number of seconds greater than 0 and at most 31622400 (366 days), or null (no backfill), got %s', schedule.backfill));
  elsif schedule.backfill is not null and schedule.overlap = 'skip' then
    perform jobs.raise_invalid('PDC03', 'backfill',
      'publishes one job per missed tick, which overlap ''skip'' (one job at a time) refuses: use overlap ''allow'' (or null)');
  elsif schedule.backfill is not null and schedule.runner = 'pg_cron' then
    perform jobs.raise_invalid('PDC03', 'backfill',
      'pg_cron does not backfill missed ticks: a schedule with backfill needs runner => ''drains'' (or no runner: drains then)');
  end if;
  v_runner := coalesce(schedule.runner,
                       case when v_tz is null and schedule.backfill is null and jobs.has_pg_cron()
                                 and jobs.pg_cron_zone() is null then 'pg_cron' else 'drains' end);
  if v_runner = 'pg_cron' and jobs.pg_cron_zone() is not null then
    perform jobs.raise_invalid('PDC03', 'runner', format(
      'pg_cron here reads schedules in time zone %s (cron.timezone), and %s is UTC: use runner => ''drains'' (or no runner: drains then), or set cron.timezone = ''GMT''',
      quote_literal(jobs.pg_cron_zone()), quote_literal(v_cron)));
  elsif v_runner = 'pg_cron' and jobs.pg_cron_lacks() is not null then
    perform jobs.raise_invalid('PDC03', 'runner', format(
      '''pg_cron'' needs %s, which role %s lacks: GRANT %s TO %s, or use runner => ''drains''',
      jobs.pg_cron_lacks(), current_user, jobs.pg_cron_lacks(), quote_ident(current_user)));
  elsif v_runner = 'pg_cron' and not jobs.has_pg_cron() then
    perform jobs.require_extension('pg_cron', 'runner => ''pg_cron''',
      'CREATE EXTENSION pg_cron in the database named by cron.database_name, or use runner => ''drains''');
  end if;

  -- The row lock serializes this with a tick being published (run_schedule,
  -- publish_due_schedules): a tick published meanwhile is not due again.
  select r.runner, r.cron, r.tz, r.last_run_at, r.last_error, r.next_run_at, r.backfill
  into v_old, v_old_cron, v_old_tz, v_last, v_error, v_old_next, v_old_backfill
  from jobs.recurring r where r.name = schedule.name for update;
  if v_old = 'drains' and (v_runner <> 'drains' or v_old_cron <> v_cron or v_old_tz is distinct from v_tz) then
    -- A tick due and not yet published by a drain is published now, not
    -- dropped with the old runner or expression (this row is ours: not skipped).
    perform jobs.publish_due_schedules(v_now);
    -- A backfill publishes at most 100 ticks a call: those left are dropped
    -- with the old expression, counted as one skipped run.
    update jobs.recurring r set skipped_ticks = r.skipped_ticks + 1, last_skipped_at = r.next_run_at
    where r.name = schedule.name and r.next_run_at <= v_now;
    -- Why they could not be published (a full queue) stays, where jobs.schedules shows it.
    select nullif(r.last_error, v_error) into v_kept_error from jobs.recurring r where r.name = schedule.name;
    -- Without backfill a tick that failed waits for the next minute, uncounted:
    -- dropped now with the old expression, it is counted (with backfill, the
    -- failed call counted its ticks).
    if v_kept_error is not null and v_old_backfill is null then
      update jobs.recurring r set skipped_ticks = r.skipped_ticks + 1, last_skipped_at = v_old_next
      where r.name = schedule.name;
    end if;
  elsif v_old = 'pg_cron' and v_runner = 'drains' then
    -- From the tick of this minute, unless pg_cron ran it (or a later one)
    -- already: pg_cron may not have reached it yet, and run_schedule will
    -- leave it to the drains once this commits.
    v_next := jobs.cron_tick(v_cron, greatest(v_last, date_trunc('minute', v_now) - interval '1 microsecond'), v_tz);
  elsif v_last > v_now then
    v_next := jobs.cron_tick(v_cron, v_last, v_tz);
  end if;
  insert into jobs.recurring as r (name, cron, task, body, timeout, priority, max_retries, queue, runner,
                                   overlap, tz, backfill, serial_key, dedupe_key, dedupe_mode, group_id, group_tier,
                                   next_run_at, created_at, updated_at)
  values (schedule.name, v_cron, schedule.task, schedule.body, schedule.timeout, schedule.priority,
          schedule.max_retries, schedule.queue, v_runner, coalesce(schedule.overlap, 'allow'), v_tz,
          schedule.backfill, schedule.serial_key, schedule.dedupe_key, schedule.dedupe_mode,
          schedule.group_id, schedule.group_tier, case when v_runner = 'drains' then v_next end, v_now, v_now)
  on conflict on constraint recurring_pkey do update
  set cron = excluded.cron, task = excluded.task, body = excluded.body, timeout = excluded.timeout,
      priority = excluded.priority, max_retries = excluded.max_retries, queue = excluded.queue,
      runner = excluded.runner, overlap = excluded.overlap, tz = excluded.tz, backfill = excluded.backfill,
      serial_key = excluded.serial_key, dedupe_key = excluded.dedupe_key, dedupe_mode = excluded.dedupe_mode,
      group_id = excluded.group_id, group_tier = excluded.group_tier,
      updated_at = excluded.updated_at, last_error = v_kept_error,
      next_run_at = case when r.runner = excluded.runner and r.cron = excluded.cron
                              and r.tz is not distinct from excluded.tz then r.next_run_at
                         else excluded.next_run_at end;

  if v_runner = 'pg_cron' then
    perform jobs.pg_cron_schedule('pgdrain:schedule:' || schedule.name, v_cron,
                                  format('select jobs.run_schedule(%L)', schedule.name));
  else
    -- Whatever the row said: a first schedule() for this name with runner
    -- pg_cron may have committed after this one read the row.
    perform jobs.pg_cron_unschedule('pgdrain:schedule:' || schedule.name, coalesce(v_old = 'pg_cron', false));
  end if;
  return v_runner;
end $$;

-- Removes a schedule (and its pg_cron job). Returns false if there was none.
create function jobs.unschedule(name text)
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_runner text;
begin
  delete from jobs.recurring r where r.name = unschedule.name returning r.runner into v_runner;
  return jobs.pg_cron_unschedule('pgdrain:schedule:' || unschedule.name, coalesce(v_runner = 'pg_cron', false))
         or v_runner is not null;
end $$;

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

-- Publishes the schedule's job now and records it; pg_cron calls this at
-- each tick. Returns the job id (with a dedupe_key, that of the job holding
-- it, as jobs.publish answers), or null when nothing was published: the
-- tick failed (last_error says why), overlap 'skip' found a job of the
-- schedule still active (skipped_ticks counts it), or drains run this
-- schedule now (a tick pg_cron started as the schedule was handed to them:
-- the drains publish it, so it must not be published twice).
create function jobs.run_schedule(name text, now timestamptz default null)
returns bigint language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(run_schedule.now, pg_catalog.now());
  r jobs.recurring;
  v_id bigint;
begin
  select * into r from jobs.recurring s where s.name = run_schedule.name for update;
  if not found then
    perform jobs.raise_invalid('PDC02', 'name', format('no schedule named %s', quote_literal(run_schedule.name)));
  end if;
  if r.runner <> 'pg_cron' then
    return null;
  end if;
  if r.overlap = 'skip' and exists (select from jobs.job_queue q where q.dedupe_key = jobs.schedule_key(r)) then
    update jobs.recurring s set skipped_ticks = s.skipped_ticks + 1, last_skipped_at = v_now where s.name = r.name;
    return null;
  end if;
  begin
    -- Its tick: the minute pg_cron fired it in (pg_cron ticks on whole minutes).
    v_id := jobs.publish(task => r.task, body => r.body, timeout => r.timeout, priority => r.priority,
                         max_retries => r.max_retries, now => v_now, queue => r.queue, dedupe_key => jobs.schedule_key(r),
                         dedupe_mode => r.dedupe_mode, serial_key => r.serial_key,
                         group_id => r.group_id, group_tier => r.group_tier,
                         attributes => jobs.schedule_attributes(r.name, date_trunc('minute', v_now)));
  exception when others then
    -- As when drains run it: the tick is recorded as failed (queue full,
    -- say) where jobs.schedules shows it, not only in pg_cron's run log.
    update jobs.recurring s set last_error = format('%s (SQLSTATE %s) at %s', sqlerrm, sqlstate, v_now)
    where s.name = r.name;
    return null;
  end;
  update jobs.recurring s set last_run_at = v_now, last_job_id = v_id, last_error = null
  where s.name = r.name;
  return v_id;
end $$;

-- Publishes one job for each drain-run schedule whose tick is due and moves
-- its next_run_at past `now`. Ticks missed while nothing claimed become one
-- job (scheduled at the first of them), or none for overlap 'skip' while a
-- job of the schedule is active (one skipped tick); with backfill, one job
-- per tick of the window (at most 100 a call); a replace tick whose dedupe
-- key another transaction holds stays due (jobs.dedupe_key_busy), as does
-- any tick with a dedupe or serial key whose publish would wait on a lock. Returns
-- the jobs published.
-- FOR UPDATE SKIP LOCKED: when many
-- drains call this at once, each due row is taken by one of them, and the
-- others skip it or, once it has committed, find it no longer due, so each
-- tick is published once. With no due schedule it costs one index probe.
create function jobs.publish_due_schedules(now timestamptz default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(publish_due_schedules.now, pg_catalog.now());
  r jobs.recurring;
  v_id bigint;
  v_count integer := 0;
  v_tick timestamptz;
  v_from timestamptz;
  v_last timestamptz;
  v_n integer;
  v_lock_timeout text;
begin
  for r in
    select * from jobs.recurring s
    where s.runner = 'drains' and s.next_run_at <= v_now
    order by s.next_run_at
    for update skip locked
  loop
    begin
      if r.overlap = 'skip' and exists (select from jobs.job_queue q where q.dedupe_key = jobs.schedule_key(r)) then
        update jobs.recurring s
        set next_run_at = jobs.cron_tick(r.cron, v_now, r.tz), skipped_ticks = s.skipped_ticks + 1,
            last_skipped_at = r.next_run_at
        where s.name = r.name;
        continue;
      end if;
      -- keep_waiting takes the replace's locks too (jobs.publish).
      if r.dedupe_mode in ('keep_waiting', 'replace', 'replace_keep_time') and jobs.dedupe_key_busy(r.dedupe_key) then
        continue;  -- still due: the next claim publishes it
      end if;
      -- A tick with a dedupe key of one's choosing waits on no lock either:
      -- its insert would wait for another transaction's uncommitted publish
      -- of the key (the unique index), for as long as that stays open, and
      -- a cycle with a serial key an earlier tick of this claim took is a
      -- deadlock. Nor does one with a serial key: ticks take their keys in
      -- tick order, not the keys' lock order, so two claims (or a claim and
      -- a bulk publish) crossing two keys each held one the other wanted.
      -- Any lock not free at once leaves it due (below, 55P03).
      if r.dedupe_key is not null or r.serial_key is not null then
        v_lock_timeout := current_setting('lock_timeout');
        perform set_config('lock_timeout', '1ms', true);
      end if;
      if r.backfill is null then
        v_id := jobs.publish(task => r.task, body => r.body, scheduled_at => r.next_run_at, timeout => r.timeout,
                             priority => r.priority, max_retries => r.max_retries, now => v_now, queue => r.queue,
                             dedupe_key => jobs.schedule_key(r), dedupe_mode => r.dedupe_mode, serial_key => r.serial_key,
                             group_id => r.group_id, group_tier => r.group_tier,
                             attributes => jobs.schedule_attributes(r.name, r.next_run_at));
        if r.dedupe_key is not null or r.serial_key is not null then
          perform set_config('lock_timeout', v_lock_timeout, true);
        end if;
        update jobs.recurring s
        set next_run_at = jobs.cron_tick(r.cron, v_now, r.tz), last_run_at = r.next_run_at, last_job_id = v_id,
            last_error = null
        where s.name = r.name;
        v_count := v_count + 1;
        continue;
      end if;
      -- Backfill: ticks before the window are dropped (the run of them
      -- counted as one skipped tick, as overlap 'skip' counts a run), then
      -- one job per tick, oldest first, at most 100 per call: next_run_at
      -- stays at the first tick not published, which the next call goes on from.
      v_tick := r.next_run_at;
      v_from := v_now - make_interval(secs => r.backfill::float8);
      if v_tick < v_from then
        v_tick := jobs.cron_tick(r.cron, v_from - interval '1 microsecond', r.tz);
      end if;
      v_last := null;
      v_n := 0;
      while v_tick <= v_now and v_n < 100 loop
        v_id := jobs.publish(task => r.task, body => r.body, scheduled_at => v_tick, timeout => r.timeout,
                             priority => r.priority, max_retries => r.max_retries, now => v_now, queue => r.queue,
                             dedupe_key => jobs.schedule_key(r), dedupe_mode => r.dedupe_mode, serial_key => r.serial_key,
                             group_id => r.group_id, group_tier => r.group_tier,
                             attributes => jobs.schedule_attributes(r.name, v_tick));
        v_last := v_tick;
        v_n := v_n + 1;
        v_tick := jobs.cron_tick(r.cron, v_tick, r.tz);
      end loop;
      if r.dedupe_key is not null or r.serial_key is not null then
        perform set_config('lock_timeout', v_lock_timeout, true);
      end if;
      update jobs.recurring s
      set next_run_at = v_tick, last_run_at = coalesce(v_last, s.last_run_at),
          last_job_id = case when v_n = 0 then s.last_job_id else v_id end,
          last_error = case when v_n = 0 then s.last_error end,
          skipped_ticks = s.skipped_ticks + (r.next_run_at < v_from)::integer,
          last_skipped_at = case when r.next_run_at < v_from then r.next_run_at else s.last_skipped_at end
      where s.name = r.name;
      v_count := v_count + v_n;  -- here: the block's rollback on an error would not undo a count
    exception when others then
      -- A keyed tick that would have waited (lock_timeout set above; the
      -- subtransaction's rollback restored it): still due, the next claim
      -- publishes it.
      if sqlstate = '55P03' and (r.dedupe_key is not null or r.serial_key is not null) then
        continue;
      end if;
      -- A schedule that cannot publish (its queue was dropped, it is full)
      -- must not stop the claim that called us: record why, try next minute.
      -- With backfill, at the next tick (a job's scheduled_at is its tick):
      -- the ticks not published count as one skipped tick.
      update jobs.recurring s
      set next_run_at = case when r.backfill is null then date_trunc('minute', v_now) + interval '1 minute'
                             else jobs.cron_tick(r.cron, v_now, r.tz) end,
          skipped_ticks = s.skipped_ticks + (r.backfill is not null)::integer,
          last_skipped_at = case when r.backfill is not null then r.next_run_at else s.last_skipped_at end,
          last_error = format('%s (SQLSTATE %s) at %s', sqlerrm, sqlstate, v_now)
      where s.name = r.name;
    end;
  end loop;
  return v_count;
end $$;

create view jobs.schedules as
select r.name, r.cron, r.task, r.body, r.timeout, r.priority, r.max_retries, r.queue, r.runner,
       case when r.runner = 'pg_cron' then 'pgdrain:schedule:' || r.name end as pg_cron_job,
       coalesce(r.next_run_at, jobs.cron_tick(r.cron, now(), r.tz)) as next_run_at,
       r.last_run_at, r.last_job_id, r.last_error, r.created_at, r.updated_at,
       r.overlap, coalesce(r.tz, 'UTC') as tz, r.skipped_ticks, r.last_skipped_at, r.backfill,
       r.serial_key, r.dedupe_key, r.dedupe_mode, r.group_id, r.group_tier
from jobs.recurring r;

-- Maintenance -----------------------------------------------------------------

-- Ended jobs moved out of jobs.job by jobs.maintain(archive => true). Same
-- columns as jobs.job: a later migration adding one there adds it here too.
create table jobs.job_archive (like jobs.job including all);

-- Retention as jobs.maintain can subtract it from now: at most 36500 days (a
-- hundred years, as maintain() takes it in TS); '9999 years' would fail every
-- pass with "timestamp out of range". Keeping ended jobs for good: 36500 days.
create function jobs.check_retention(p_retention interval)
returns void language plpgsql as $$
begin
  if p_retention is null or p_retention < interval '0' or p_retention > interval '36500 days' then
    perform jobs.raise_invalid('PDC03', 'retention', format(
      'must be an interval between 0 and 36500 days (a hundred years: ended jobs kept for good), such as ''7 days'', got %s',
      coalesce(quote_literal(p_retention), 'null')));
  end if;
end $$;

-- One maintenance pass: settles expired leases, publishes due drain-run
-- ticks, and removes ended jobs older than `retention` from jobs.job (moved
-- to jobs.job_archive when archive is true) and the throttle windows they
-- hold (sql/0014: jobs.forget_windows), at most max_rows of each, along
-- with pg_cron's run log of pgdrain's own jobs past the same age (skipped
-- when this role may not delete from it), and at most max_rows ended dedupe
-- throttle windows (sql/0014). One transaction: a backlog larger
-- than max_rows takes more passes (jobs.run_maintenance). Returns
-- {"expired", "ticks", "deleted", "archived", "windows"} (windows: the
-- ended throttle windows deleted; expired: jobs.expire's count, the leases
-- settled and the waiting jobs ended past their expires_at together).
create function jobs.maintain(
  retention interval    default '7 days',
  archive   boolean     default false,
  max_rows  integer     default 100000,
  now       timestamptz default null,
  prune_run_log boolean default true
) returns jsonb language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(maintain.now, pg_catalog.now());
  v_expired integer;
  v_ticks integer;
  v_removed integer;
  v_archived integer;
  v_windows integer;
  v_gone bigint[];
  v_gone_keys text[];
begin
  perform jobs.check_retention(maintain.retention);
  if maintain.max_rows is null or maintain.max_rows < 1 or maintain.max_rows > 10000000 then
    perform jobs.raise_invalid('PDC03', 'max_rows', format('must be between 1 and 10000000, got %s', maintain.max_rows));
  end if;
  -- Ticks first: their queue locks before expiry's serial-key locks, as jobs.claim_json takes them.
  v_ticks := jobs.publish_due_schedules(v_now);

  -- Retention before expiry: a job expiry ends is dated when its lease ran
  -- out (often past a short retention), and would otherwise be deleted by
  -- this very pass, never seen as a dead letter. Its rows taken SKIP LOCKED,
  -- this statement waits on no row, so expiry's lock order is unchanged.
  with old as (
    select j.job_id from jobs.job j
    where j.ended_at < v_now - maintain.retention
    order by j.ended_at
    limit maintain.max_rows
    for update skip locked
  ), gone as (
    delete from jobs.job j using old where j.job_id = old.job_id returning j.*
  ), kept as (
    insert into jobs.job_archive select * from gone where maintain.archive returning 1
  )
  -- The throttle windows (sql/0014) the deleted jobs hold go with them, as
  -- jobs.delete_jobs lets them go: kept, a throttled publish of the key
  -- would answer a job that no longer exists. An archived job still is one
  -- (getJob and waitFor find it in jobs.job_archive) and holds its window,
  -- unless its end frees it (jobs.frees_window; jobs.throttle_lock reads
  -- that in jobs.job_archive too: this drops the row). At most max_rows,
  -- one probe per keyed job.
  select (select count(*) from gone), (select count(*) from kept), f.ids, f.keys
  into v_removed, v_archived, v_gone, v_gone_keys
  from (select array_agg(g.job_id) as ids, array_agg(g.dedupe_key) as keys from gone g
        where g.dedupe_key is not null and (not maintain.archive or jobs.frees_window(g.status, g.attempts, g.error))) f;
  if v_gone is not null then
    perform jobs.forget_windows(v_gone, v_gone_keys);
  end if;
  -- Dedupe keys' throttle windows that have ended (sql/0014): no publish
  -- reads a row past its until. Counted, so that a full share tells
  -- run_maintenance and TS maintain() that more are left.
  delete from jobs.throttle t using (
    select o.dedupe_key from jobs.throttle o where o.until <= v_now
    order by o.until limit maintain.max_rows for update skip locked) old
  where t.dedupe_key = old.dedupe_key;
  get diagnostics v_windows = row_count;

  v_expired := jobs.expire(maintain.max_rows, v_now);

  -- Not for a role without USAGE on schema cron (managed PostgreSQL): the
  -- rest of the pass must not fail for it.
  -- It reads all of pg_cron's log (no index on it): run_maintenance asks it of its first pass only.
  if maintain.prune_run_log and jobs.has_pg_cron() and jobs.pg_cron_lacks(true) is null then
    execute 'delete from cron.job_run_details d using cron.job j
             where d.jobid = j.jobid and j.jobname like ''pgdrain:%'' and d.end_time < $1'
      using v_now - maintain.retention;
  end if;
  return jsonb_build_object('expired', v_expired, 'ticks', v_ticks,
                            'deleted', v_removed - v_archived, 'archived', v_archived, 'windows', v_windows);
end $$;

-- Maintenance until caught up, as pg_cron runs it (jobs.schedule_maintenance):
-- jobs.maintain passes of at most 10,000 rows, each committed on its own,
-- until a pass finds less to do, max_rows (null: no cap) are removed, or
-- `budget` seconds have passed (50: done before a once-a-minute run is due).
-- One maintain call a minute with its 100,000 rows falls behind past ~1,700
-- ended jobs/s; here, on a backlog, no pass holds its locks or its snapshot
-- for long. A run killed midway keeps the passes it committed and rolls back
-- the one it was in (each deletes and archives its rows in one statement);
-- two runs at once take different rows (SKIP LOCKED). A procedure, as only
-- a CALLed procedure may commit; it cannot be security definer, so it runs as
-- its caller (pg_cron: the role that scheduled it): the owner of schema jobs
-- or pgdrain_admin. It commits, so it is called on its own: not inside BEGIN,
-- and as the only statement of a pg_cron command. report: maintain's counts
-- summed, "passes", "caughtUp" (false while the last pass still found a full
-- share of jobs, leases or throttle windows to do).
create procedure jobs.run_maintenance(
  retention interval default '7 days',
  archive   boolean  default false,
  budget    numeric  default 50,
  max_rows  integer  default null,
  inout report jsonb default null
) language plpgsql as $$
declare
  v_path text := pg_catalog.current_setting('search_path');
  v_deadline timestamptz;
  v_budget numeric;
  v_step integer;
  v_pass jsonb;
  v_removed bigint := 0;
  v_passes integer := 0;
  v_done boolean := false;
  v_counts jsonb := '{"expired": 0, "ticks": 0, "deleted": 0, "archived": 0, "windows": 0}';
begin
  -- As in jobs.drain_sql: the path pinned, again after every COMMIT.
  perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  perform jobs.check_retention(run_maintenance.retention);
  if run_maintenance.budget is null or run_maintenance.budget <= 0 or run_maintenance.budget > 86400 then
    perform jobs.raise_invalid('PDC03', 'budget', format('must be greater than 0 and at most 86400 seconds, got %s', run_maintenance.budget));
  end if;
  if run_maintenance.max_rows is not null and (run_maintenance.max_rows < 1 or run_maintenance.max_rows > 1000000000) then
    perform jobs.raise_invalid('PDC03', 'max_rows', format('must be null (no cap) or between 1 and 1000000000, got %s', run_maintenance.max_rows));
  end if;
  -- The whole CALL is one statement to statement_timeout (common on managed
  -- databases): end well before it, or the report is lost with the call.
  select least(run_maintenance.budget, case when t.setting::numeric > 0 then t.setting::numeric / 1000 * 0.8 end)
  into v_budget from pg_catalog.pg_settings t where t.name = 'statement_timeout';
  v_deadline := clock_timestamp() + make_interval(secs => v_budget);
  loop
    v_step := least(10000, coalesce(run_maintenance.max_rows - v_removed, 10000));
    -- A pass waiting on a lock (a CREATE INDEX on jobs.job, a serial key's
    -- lock) waits only until the budget ends, then the run stops there.
    perform pg_catalog.set_config('lock_timeout',
      greatest(1, extract(epoch from v_deadline - clock_timestamp()) * 1000)::bigint::text, true);
    begin
      v_pass := jobs.maintain(run_maintenance.retention, coalesce(run_maintenance.archive, false), v_step,
                              prune_run_log => v_passes = 0);
    exception when lock_not_available then
      exit;
    end;
    select jsonb_object_agg(k, (v_counts->>k)::bigint + (v_pass->>k)::bigint) into v_counts
    from jsonb_object_keys(v_counts) k;
    v_removed := v_removed + (v_pass->>'deleted')::bigint + (v_pass->>'archived')::bigint;
    v_passes := v_passes + 1;
    commit;
    perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- Caught up when a pass did less than it could, of each kind of work.
    v_done := (v_pass->>'deleted')::bigint + (v_pass->>'archived')::bigint < v_step
              and (v_pass->>'expired')::bigint < v_step and (v_pass->>'windows')::bigint < v_step;
    exit when v_done or v_removed >= coalesce(run_maintenance.max_rows, v_removed + 1) or clock_timestamp() >= v_deadline;
  end loop;
  report := v_counts || jsonb_build_object('passes', v_passes, 'caughtUp', v_done);
  perform pg_catalog.set_config('search_path', v_path, true);
end $$;

-- Registers maintenance with pg_cron (one call, idempotent): pgdrain:maintain
-- calls jobs.run_maintenance at `cron` (for up to `budget` seconds), and
-- pgdrain:vacuum vacuums jobs.job_queue every 10 minutes so a busy queue
-- table stays small. Returns the two job ids.
create function jobs.schedule_maintenance(
  cron      text     default '* * * * *',
  retention interval default '7 days',
  archive   boolean  default false,
  budget    numeric  default 50
) returns bigint[] language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform jobs.cron_next(schedule_maintenance.cron);
  perform jobs.check_retention(schedule_maintenance.retention);
  if schedule_maintenance.budget is null or schedule_maintenance.budget <= 0 or schedule_maintenance.budget > 86400 then
    perform jobs.raise_invalid('PDC03', 'budget', format('must be greater than 0 and at most 86400 seconds, got %s', schedule_maintenance.budget));
  end if;
  if not jobs.has_pg_cron() then
    perform jobs.require_extension('pg_cron', 'jobs.schedule_maintenance',
      'without it, call select jobs.maintain() from any scheduler; drains expire leases on their own');
  end if;
  return array[
    jobs.pg_cron_schedule('pgdrain:maintain', schedule_maintenance.cron,
      format('call jobs.run_maintenance(%L::interval, %s, %s)', schedule_maintenance.retention,
             case when schedule_maintenance.archive then 'true' else 'false' end, schedule_maintenance.budget)),
    jobs.pg_cron_schedule('pgdrain:vacuum', '*/10 * * * *', 'vacuum (analyze) jobs.job_queue')];
end $$;
