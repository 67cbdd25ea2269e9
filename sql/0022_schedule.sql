-- pgdrain 0022: creating or changing a recurring job (jobs.schedule). Removing
-- one (jobs.unschedule) and the views that list them: sql/0042.

-- Creates or replaces the schedule `name`: at each tick of `cron` (UTC, or
-- on the wall clock of time zone `tz`), a job of `task` with `body` and these
-- options is published. Idempotent: calling it again with the same arguments
-- changes nothing (a pending tick is kept, and last_error, why the last
-- tick failed, until a tick publishes; a stop is cleared: the schedule goes
-- on, below). runner: null picks pg_cron when
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
-- applies from the next tick. Returns the runner. cron may be an RFC 5545
-- recurrence instead (sql/0037; DTSTART's TZID is then the tz): drains run
-- it, and once COUNT or UNTIL ends it next_run_at is null (nothing fires).
-- An expression whose next tick takes more than a tick's budget to compute
-- (sql/0019) is refused, PDC01 naming cron; a schedule a tick stopped for
-- that (next_run_at null, sql/0023) goes on from now when called again.
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
  v_now timestamptz := jobs.clock(schedule.now);
  v_next timestamptz;
  v_runner text;
  v_tz text;
  v_old text;
  v_old_cron text;
  v_old_tz text;
  v_last timestamptz;
  v_error text;       -- the row's last_error before this call
  v_kept_error text;  -- the row's last_error after this call
  v_old_next timestamptz;
  v_old_backfill numeric;
  v_old_queue text;  -- the queue its ticks went to
  v_rrule_tz text;
  v_skip boolean;  -- its tick publishes nothing (overlap 'skip', a job of it active)
  -- Stored as pg_cron is given it: trimmed, an @ name in lower case.
  v_cron text := jobs.cron_text(schedule.cron);
begin
  -- 46: pg_cron's job names hold 63 bytes, 17 of them 'pgdrain:schedule:'.
  if schedule.name is null or schedule.name !~ '^[A-Za-z0-9_.:-]{1,46}$' then
    perform jobs.raise_invalid('PDC02', 'name', format(
      'must be 1 to 46 letters, digits, _ . : or -, got %s', coalesce(left(quote_literal(schedule.name), 80), 'null')));
  end if;
  -- The expression is checked (PDC01 naming cron) before the zone, and its
  -- next tick computed once, on the zone's clock (below): each evaluation
  -- may take a tick's budget (sql/0019).
  if jobs.is_rrule(v_cron) then
    perform jobs.rrule_parse(v_cron, null);
  else
    perform jobs.cron_parse(v_cron);
  end if;
  v_tz := jobs.check_tz(schedule.tz);
  if jobs.is_rrule(v_cron) then
    -- A recurrence rule whose DTSTART names a TZID recurs on that zone's
    -- clock: the schedule's tz, which must then be that zone or none.
    -- As pg_timezone_names spells it (a TZID in any case names the zone tz names).
    v_rrule_tz := jobs.check_tz((jobs.rrule_parse(v_cron, v_tz)).tz);
    if v_tz is not null and v_rrule_tz is distinct from v_tz then
      perform jobs.raise_invalid('PDC03', 'tz', format('is %s, but the rule''s DTSTART names TZID %s: give the same zone, or no tz',
        quote_literal(v_tz), quote_literal(coalesce(v_rrule_tz, 'UTC'))));
    end if;
    v_tz := v_rrule_tz;
    if schedule.runner = 'pg_cron' then
      perform jobs.raise_invalid('PDC03', 'runner',
        'pg_cron cannot fire a recurrence rule (FREQ=...): use runner => ''drains'' (or no runner: drains then)');
    end if;
  end if;
  v_next := jobs.cron_tick(v_cron, v_now, v_tz);
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
    perform jobs.raise_no_queue(coalesce(schedule.queue, 'default'),
      format('no queue named %s', quote_literal(coalesce(schedule.queue, 'default'))));
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
                       case when v_tz is null and schedule.backfill is null and not jobs.is_rrule(v_cron) and jobs.has_pg_cron()
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

  -- A due tick this call publishes into a bounded queue (below) waits for
  -- the queue's publishers' lock: taken first, before the row, as a publish
  -- and a claim (jobs.tick_queues) take them; with the row held, an app
  -- transaction that published to that queue, then called this for this
  -- schedule, closed a cycle (40P01). The queue read again once the row is
  -- locked (jobs.lock_schedule): another call may have moved it meanwhile.
  v_skip := jobs.lock_schedule(schedule.name, v_now, v_cron, v_tz, v_runner);
  -- The row lock serializes this with a tick being published (run_schedule,
  -- publish_due_schedules): a tick published meanwhile is not due again.
  select r.runner, r.cron, r.tz, r.last_run_at, r.last_error, coalesce(r.retry_tick, r.next_run_at), r.backfill, coalesce(r.queue, 'default')
  into v_old, v_old_cron, v_old_tz, v_last, v_error, v_old_next, v_old_backfill, v_old_queue
  from jobs.recurring r where r.name = schedule.name for update;
  -- A rule with no occurrence left is refused, unless it is this schedule's
  -- own, which ran out (calling schedule() again changes nothing).
  if v_next is null and not coalesce(v_old_cron = v_cron and v_old_tz is not distinct from v_tz, false) then
    perform jobs.raise_invalid('PDC01', 'cron', format('%s has no occurrence after %s (COUNT or UNTIL ended it, or none comes within a century): the schedule would never fire',
      left(quote_literal(v_cron), 200), v_now));
  end if;
  if v_old = 'drains' and (v_runner <> 'drains' or v_old_cron <> v_cron or v_old_tz is distinct from v_tz) then
    -- A tick due and not yet published by a drain is published now, not
    -- dropped with the old runner or expression (this row is ours: not skipped).
    -- Its publish waits on locks as any publish does (pgdrain.tick_wait,
    -- sql/0023; this schedule's only): a claim leaves a tick that would
    -- wait due, but here it would be dropped, counted skipped, whenever a
    -- transaction that published to its bounded queue was open.
    -- Overlap 'skip' with a job of it active (v_skip): dropped, counted, below.
    if not v_skip then
      perform set_config('pgdrain.tick_wait', schedule.name, true);
      perform jobs.publish_due_schedules(v_now);
      perform set_config('pgdrain.tick_wait', '', true);
    end if;
    -- A backfill publishes at most 100 ticks a call: those left are dropped
    -- with the old expression, counted as one skipped run.
    update jobs.recurring r set skipped_ticks = r.skipped_ticks + 1, last_skipped_at = r.next_run_at
    where r.name = schedule.name and r.next_run_at <= v_now;
    -- Why they could not be published (a full queue) stays, where jobs.schedules shows it;
    -- not a stop (the old expression's next tick out of budget): this call ends it.
    select nullif(r.last_error, v_error) into v_kept_error from jobs.recurring r
    where r.name = schedule.name and r.last_error not like 'stopped until jobs.schedule is called for it again: %';
    -- Without backfill a tick that failed waits for the next minute, uncounted:
    -- dropped now with the old expression, it is counted (with backfill, the
    -- failed call counted its ticks).
    if v_kept_error is not null and v_old_backfill is null then
      update jobs.recurring r set skipped_ticks = r.skipped_ticks + 1, last_skipped_at = v_old_next
      where r.name = schedule.name;
    end if;
  else
    -- Why its last tick failed stays until a tick publishes (or the
    -- expression changes, above): a call changing nothing else hides
    -- nothing. A stop is what this call ends; a pg_cron schedule's new
    -- expression or runner drops its error with its ticks, as the drains'.
    v_kept_error := case when v_error not like 'stopped until jobs.schedule is called for it again: %'
                          and v_old = v_runner and v_old_cron = v_cron then v_error end;
  end if;
  if v_old = 'pg_cron' and v_runner = 'drains' then
    -- From the tick of this minute, unless pg_cron ran it (or a later one)
    -- already: pg_cron may not have reached it yet, and run_schedule will
    -- leave it to the drains once this commits.
    v_next := jobs.cron_tick(v_cron, greatest(v_last, date_trunc('minute', v_now) - interval '1 microsecond'), v_tz);
  end if;
  -- A tick published after this call's clock (now(): a transaction begun
  -- before that claim) is not due again, whatever the expression.
  if v_last > v_now then
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
      retry_tick = case when r.runner = excluded.runner and r.cron = excluded.cron
                             and r.tz is not distinct from excluded.tz then r.retry_tick end,
      -- A schedule a tick stopped (next_run_at null, sql/0023) goes on from
      -- now; one whose rule ended has no tick after now either.
      next_run_at = case when r.runner = excluded.runner and r.cron = excluded.cron
                              and r.tz is not distinct from excluded.tz then coalesce(r.next_run_at, excluded.next_run_at)
                         else excluded.next_run_at end;

  -- New (removed, added again), new timing or another queue (a miss was the old one's lock): the
  -- misses go (jobs.tick_miss: kept, a tick at the same due time waited longer from one); not waiting for those jobs.maintain deletes.
  if v_old is null or v_old <> v_runner or v_old_cron <> v_cron or v_old_tz is distinct from v_tz
     or v_old_queue <> coalesce(schedule.queue, 'default') then
    delete from jobs.tick_miss m where m.schedule = schedule.name
      and m.due in (select o.due from jobs.tick_miss o where o.schedule = schedule.name for update skip locked);
  end if;
  if v_runner = 'pg_cron' then
    perform jobs.pg_cron_schedule('pgdrain:schedule:' || schedule.name, v_cron,
                                  format('set transaction isolation level read committed; select jobs.run_schedule(%L)', schedule.name));
  else
    -- Whatever the row said: a first schedule() for this name with runner
    -- pg_cron may have committed after this one read the row.
    perform jobs.pg_cron_unschedule('pgdrain:schedule:' || schedule.name, coalesce(v_old = 'pg_cron', false));
  end if;
  return v_runner;
end $$;
