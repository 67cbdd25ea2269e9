-- pgdrain 0019: cron expressions, parsed and evaluated in the database, for
-- recurring jobs wherever pg_cron does not run them.
--
-- Errors: PDC01 cron, PDC03 tz or after (the COLUMN field names it).

-- Cron expressions ------------------------------------------------------------
--
-- Five fields, minute hour day-of-month month day-of-week, each *, a value, a
-- range or a list, with an optional /step (1 or more) after * or a range; names jan-dec
-- and sun-sat; 0 or 7 is Sunday; @yearly @annually @monthly @weekly @daily
-- @midnight @hourly. Evaluated in UTC, as pg_cron 1.4 does, or on the wall
-- clock of a time zone (tz). When neither day field starts with *, a day
-- matches either of them (Vixie cron, pg_cron).
-- pg_cron parses expressions where it runs them; this evaluator serves the
-- databases without it and checks every expression, so a schedule means the
-- same thing whichever runs it.

create type jobs.cron_spec as (
  minutes     integer[],
  hours       integer[],
  days        integer[],
  months      integer[],
  weekdays    integer[],
  any_day     boolean,   -- the day-of-month field starts with *
  any_weekday boolean,   -- the day-of-week field starts with *
  fixed       boolean    -- no * nor /step in the minute and hour fields (DST rules below)
);

-- The values one field allows. Names (p_names) count from p_first.
create function jobs.cron_values(p_text text, p_field text, p_lo integer, p_hi integer,
                                 p_names text[], p_first integer, p_expr text)
returns integer[] language plpgsql immutable as $$
declare
  v_item text;
  v_m text[];
  v_lo integer;
  v_hi integer;
  v_step integer;
  v_out integer[] := '{}';
begin
  foreach v_item in array string_to_array(p_text, ',') loop
    v_m := regexp_match(v_item, '^(?:(\*)|([0-9]{1,4}|[a-z]{3})(?:-([0-9]{1,4}|[a-z]{3}))?)(?:/([0-9]{1,4}))?$');
    if v_m is null then
      perform jobs.raise_invalid('PDC01', 'cron', format(
        '%s field %s must be *, a value, a range or a list, with an optional /step (in %s)',
        p_field, quote_literal(v_item), quote_literal(p_expr)));
    end if;
    if v_m[1] is not null then
      v_lo := p_lo;
      v_hi := p_hi;
    else
      v_lo := case when v_m[2] ~ '^[0-9]' then v_m[2]::integer else array_position(p_names, v_m[2]) - 1 + p_first end;
      v_hi := case when v_m[3] is null then v_lo
                   when v_m[3] ~ '^[0-9]' then v_m[3]::integer else array_position(p_names, v_m[3]) - 1 + p_first end;
      if v_lo is null or v_hi is null or v_lo < p_lo or v_hi > p_hi then
        perform jobs.raise_invalid('PDC01', 'cron', format('%s field %s is out of range %s-%s (in %s)',
          p_field, quote_literal(v_item), p_lo, p_hi, quote_literal(p_expr)));
      end if;
      if v_lo > v_hi then
        perform jobs.raise_invalid('PDC01', 'cron', format('%s field %s is a range that goes down (in %s)',
          p_field, quote_literal(v_item), quote_literal(p_expr)));
      end if;
      if v_m[4] is not null and v_m[3] is null then
        perform jobs.raise_invalid('PDC01', 'cron', format('%s field %s: a /step needs * or a range before it, as in */15 or 0-30/5 (in %s)',
          p_field, quote_literal(v_item), quote_literal(p_expr)));
      end if;
    end if;
    -- Any step from 1, as pg_cron: one past the range picks its first value (*/61: minute 0).
    v_step := coalesce(v_m[4]::integer, 1);
    if v_step < 1 then
      perform jobs.raise_invalid('PDC01', 'cron', format('%s field %s: the step must be 1 or more (in %s)',
        p_field, quote_literal(v_item), quote_literal(p_expr)));
    end if;
    v_out := v_out || array(select generate_series(v_lo, v_hi, v_step));
  end loop;
  return v_out;
end $$;

-- A cron expression as pgdrain checks it, stores it and hands it to pg_cron:
-- without the white space around it, and an @ name in lower case (pg_cron
-- refuses @HOURLY; it reads month and day names in any case). Every function
-- that passes an expression to pg_cron passes it through this one
-- (jobs.pg_cron_schedule), so all of them take the same texts.
create function jobs.cron_text(expr text)
returns text language sql immutable as $$
  select case when t like '@%' then lower(t) else t end
  from (select regexp_replace(cron_text.expr, '^\s+|\s+$', '', 'g') as t) s
$$;

-- Whether a schedule's cron text is an RFC 5545 recurrence (sql/0037)
-- rather than a cron expression, told apart as pg-boss tells them: a FREQ=
-- part, or a line that opens with a property name and ; or : (DTSTART:,
-- RRULE:). No cron expression has = ; or :.
create function jobs.is_rrule(expr text)
returns boolean language sql immutable as $$
  select is_rrule.expr ~* '(^|[[:space:]]|;)FREQ=' or is_rrule.expr ~* '(?n)^[ \t]*[a-z][a-z0-9-]*[;:]'
$$;

-- Parses an expression; raises PDC01 naming the bad field.
create function jobs.cron_parse(expr text)
returns jobs.cron_spec language plpgsql immutable as $$
declare
  v text := lower(jobs.cron_text(cron_parse.expr));
  f text[];
  s jobs.cron_spec;
begin
  if v is null or v = '' or length(v) > 200 then
    perform jobs.raise_invalid('PDC01', 'cron', 'must be a cron expression of at most 200 characters, such as ''*/5 * * * *''');
  end if;
  v := case v when '@yearly' then '0 0 1 1 *' when '@annually' then '0 0 1 1 *' when '@monthly' then '0 0 1 * *'
              when '@weekly' then '0 0 * * 0' when '@daily' then '0 0 * * *' when '@midnight' then '0 0 * * *'
              when '@hourly' then '0 * * * *' else v end;
  f := regexp_split_to_array(v, '\s+');
  if cardinality(f) <> 5 then
    perform jobs.raise_invalid('PDC01', 'cron', format(
      'must have 5 fields (minute hour day-of-month month day-of-week) or be @hourly, @daily, @weekly, @monthly or @yearly, got %s',
      quote_literal(cron_parse.expr)));
  end if;
  s.minutes := jobs.cron_values(f[1], 'minute', 0, 59, null, 0, cron_parse.expr);
  s.hours := jobs.cron_values(f[2], 'hour', 0, 23, null, 0, cron_parse.expr);
  s.days := jobs.cron_values(f[3], 'day-of-month', 1, 31, null, 0, cron_parse.expr);
  s.months := jobs.cron_values(f[4], 'month', 1, 12,
    '{jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec}', 1, cron_parse.expr);
  s.weekdays := array(select distinct d % 7 from unnest(jobs.cron_values(f[5], 'day-of-week', 0, 7,
    '{sun,mon,tue,wed,thu,fri,sat}', 0, cron_parse.expr)) d);
  s.any_day := f[3] like '*%';
  s.any_weekday := f[5] like '*%';
  s.fixed := f[1] !~ '[*/]' and f[2] !~ '[*/]';
  return s;
end $$;

-- A tick's budget ---------------------------------------------------------------
--
-- Finding a schedule's next tick searches forward in time, and a drain's
-- claim does it for every due schedule (jobs.publish_due_schedules): a rule
-- whose search is long (a sparse recurrence rule, a COUNT counted from a
-- DTSTART centuries back) would make every claim slow, or fail them all
-- under a statement_timeout (an uncatchable cancel, next_run_at never
-- moving). So the searches (jobs.cron_spec_next, jobs.rrule_spec_next) take
-- steps from a budget: a step is about a day examined (a period: a few
-- steps more; a month skipped whole: one). Past jobs.max_tick_steps() of
-- them they raise PDC01 naming cron (a catchable error): jobs.schedule
-- refuses the rule, and a claim records it in the schedule's last_error and
-- stops the schedule. The steps left are setting pgdrain.tick_steps, for the
-- transaction ('<n> steps left', jobs.tick_steps_give; no other value is a
-- budget): jobs.cron_tick gives one evaluation the budget when nothing
-- has (a search called alone takes a whole one), and
-- jobs.publish_due_schedules gives it to all the ticks of one call.
-- The searches and jobs.cron_tick are stable, not immutable: they read and
-- keep the setting, so the same arguments may run out of steps; an immutable
-- call with constant arguments is folded into its plan, and a kept plan then
-- answers without taking its steps, a budget spent or not.

-- The most steps one evaluation (one claim's ticks together) may take: about
-- 0.1 to 0.2 s of CPU (measured on a 2-core server), whatever the rule.
create function jobs.max_tick_steps()
returns integer language sql immutable as $$ select 50000 $$;

-- Whether an evaluation is under way: the setting as jobs.tick_steps_give
-- words it ('<n> steps left'). Any other value (a session's SET, a role's
-- or database's default: a number, a typo) is none, never a budget: it can
-- neither refuse a rule nor fail a call.
create function jobs.tick_steps_under_way()
returns boolean language sql stable as $$
  select coalesce(current_setting('pgdrain.tick_steps', true) ~ '^[0-9]{1,18} steps left$', false)
$$;

-- The steps the evaluation under way has left (none under way: a whole budget).
create function jobs.tick_steps_left()
returns bigint language sql stable as $$
  select coalesce((regexp_match(current_setting('pgdrain.tick_steps', true), '^([0-9]{1,18}) steps left$'))[1]::bigint,
                  jobs.max_tick_steps())
$$;

-- Gives the evaluation under way p_left steps (for the transaction).
create function jobs.tick_steps_give(p_left bigint)
returns void language sql as $$
  select set_config('pgdrain.tick_steps', greatest(p_left, 0) || ' steps left', true)
$$;

-- Records the steps a search leaves, for the evaluation under way (none: nothing to record).
create function jobs.tick_steps_keep(p_left bigint)
returns void language plpgsql as $$
begin
  if jobs.tick_steps_under_way() then
    perform jobs.tick_steps_give(p_left);
  end if;
end $$;

-- The error of a search out of steps (PDC01 naming cron, as
-- jobs.raise_invalid words it): what it was looking for (p_what) and how
-- far it got. Its hint (jobs.tick_steps_hint()) tells it from the other PDC01s.
create function jobs.tick_steps_hint()
returns text language sql immutable as $$
  select 'A tick''s budget is jobs.max_tick_steps() steps: give a rule that recurs more often, or a later DTSTART.'
$$;

create function jobs.tick_steps_spent(p_what text, p_reached timestamp)
returns void language plpgsql as $$
begin
  raise exception 'cron: %', format(
    '%s took more than the %s steps a tick may take (jobs.max_tick_steps(); searched up to %s): '
    'a schedule''s next tick is computed at every tick, inside the drains'' claims, so a rule this costly cannot be scheduled',
    p_what, jobs.max_tick_steps(), p_reached)
  using errcode = 'PDC01', column = 'cron', hint = jobs.tick_steps_hint();
end $$;

-- The first minute after `after` that spec matches, or null if none within
-- a century. Whole months that do not match are skipped at once. A step of
-- the tick's budget per day or month.
create function jobs.cron_spec_next(spec jobs.cron_spec, after timestamptz)
returns timestamptz language plpgsql stable as $$
declare
  v_from timestamp := date_trunc('minute', cron_spec_next.after at time zone 'UTC') + interval '1 minute';
  v_day date := v_from::date;
  v_first boolean := true;  -- v_day is v_from's day: start at its hour and minute
  v_dom boolean;
  v_dow boolean;
  v_hour integer;
  v_minute integer;
  v_left bigint := jobs.tick_steps_left();
begin
  for i in 1..6000 loop
    v_left := v_left - 1;
    if v_left < 0 then
      perform jobs.tick_steps_spent(format('finding the next minute of the cron expression after %s', cron_spec_next.after), v_day);
    end if;
    if extract(month from v_day)::integer <> all(spec.months) then
      v_day := (date_trunc('month', v_day) + interval '1 month')::date;
      v_first := false;
      continue;
    end if;
    v_dom := extract(day from v_day)::integer = any(spec.days);
    v_dow := extract(dow from v_day)::integer = any(spec.weekdays);
    if (case when spec.any_day or spec.any_weekday then v_dom and v_dow else v_dom or v_dow end) then
      select min(h) into v_hour from unnest(spec.hours) h
      where h >= case when v_first then extract(hour from v_from)::integer else 0 end;
      while v_hour is not null loop
        select min(m) into v_minute from unnest(spec.minutes) m
        where m >= case when v_first and v_hour = extract(hour from v_from) then extract(minute from v_from)::integer else 0 end;
        if v_minute is not null then
          perform jobs.tick_steps_keep(v_left);
          return (v_day + make_time(v_hour, v_minute, 0)) at time zone 'UTC';
        end if;
        select min(h) into v_hour from unnest(spec.hours) h where h > v_hour;
      end loop;
    end if;
    v_day := v_day + 1;
    v_first := false;
  end loop;
  perform jobs.tick_steps_keep(v_left);
  return null;
end $$;
