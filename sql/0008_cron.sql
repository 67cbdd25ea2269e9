-- pgdrain 0008: cron expressions, evaluated in the database, for recurring
-- jobs (0006) wherever pg_cron does not run them.
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

-- The first minute after `after` that spec matches, or null if none within
-- a century. Whole months that do not match are skipped at once.
create function jobs.cron_spec_next(spec jobs.cron_spec, after timestamptz)
returns timestamptz language plpgsql immutable as $$
declare
  v_from timestamp := date_trunc('minute', cron_spec_next.after at time zone 'UTC') + interval '1 minute';
  v_day date := v_from::date;
  v_first boolean := true;  -- v_day is v_from's day: start at its hour and minute
  v_dom boolean;
  v_dow boolean;
  v_hour integer;
  v_minute integer;
begin
  for i in 1..6000 loop
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
          return (v_day + make_time(v_hour, v_minute, 0)) at time zone 'UTC';
        end if;
        select min(h) into v_hour from unnest(spec.hours) h where h > v_hour;
      end loop;
    end if;
    v_day := v_day + 1;
    v_first := false;
  end loop;
  return null;
end $$;

-- Time zones ------------------------------------------------------------------

-- tz's offset from UTC at instant t (interval '+01:00:00' in Paris in winter).
create function jobs.tz_offset(p_tz text, p_t timestamptz)
returns interval language sql immutable as $$
  select (p_t at time zone p_tz) - (p_t at time zone 'UTC')
$$;

-- The first instant in (p_from, p_to] at which tz's offset is no longer
-- p_offset, or null. Probed a day apart (offsets change months apart), then
-- bisected to the microsecond.
create function jobs.tz_change(p_tz text, p_offset interval, p_from timestamptz, p_to timestamptz)
returns timestamptz language plpgsql immutable as $$
declare
  v_hi timestamptz;
  v_lo timestamptz;
  v_mid timestamptz;
begin
  select min(p) into v_hi
  from (select generate_series(p_from + interval '24 hours', p_to, interval '24 hours') union all select p_to) s(p)
  where jobs.tz_offset(p_tz, p) <> p_offset;
  if v_hi is null then
    return null;
  end if;
  v_lo := greatest(p_from, v_hi - interval '24 hours');
  while v_hi - v_lo > interval '1 microsecond' loop
    v_mid := v_lo + (v_hi - v_lo) / 2;
    if jobs.tz_offset(p_tz, v_mid) = p_offset then v_lo := v_mid; else v_hi := v_mid; end if;
  end loop;
  return v_hi;
end $$;

-- Checks a time zone name and returns it as pg_timezone_names spells it, or
-- null for UTC (null, 'UTC' and its aliases). Raises PDC03 naming tz for a
-- name PostgreSQL does not know as a zone: an abbreviation such as CET or
-- EST (it would read it as a fixed offset, without daylight saving time) or
-- a POSIX rule such as 'UTC+3' (whose sign is inverted). p_lookup: always
-- look the name up in pg_timezone_names (some 20 ms: it reads the zone
-- files); else only when a cheaper test cannot tell (a digit in the name).
create function jobs.check_tz(p_tz text, p_lookup boolean default true)
returns text language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  v_name text;
begin
  if p_tz is null or upper(p_tz) in ('UTC', 'ETC/UTC', 'UCT', 'ETC/UCT', 'GMT', 'ETC/GMT', 'GMT0', 'ETC/GMT0', 'GMT+0',
                                     'ETC/GMT+0', 'GMT-0', 'ETC/GMT-0', 'GREENWICH', 'ETC/GREENWICH', 'UNIVERSAL',
                                     'ETC/UNIVERSAL', 'ZULU', 'ETC/ZULU') then
    return null;
  end if;
  if length(p_tz) > 64 or p_tz !~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$' then
    perform jobs.raise_invalid('PDC03', 'tz', format('must be an IANA time zone name such as ''Europe/Paris'', got %s',
      left(quote_literal(p_tz), 80)));
  end if;
  if exists (select from pg_timezone_abbrevs a where a.abbrev = upper(p_tz)) then
    perform jobs.raise_invalid('PDC03', 'tz', format(
      '%s is an abbreviation, which PostgreSQL reads as a fixed offset (no daylight saving time): give a zone name such as ''Europe/Paris''',
      quote_literal(p_tz)));
  end if;
  if p_lookup or p_tz ~ '[0-9]' then
    select n.name into v_name from pg_timezone_names n where lower(n.name) = lower(p_tz) order by n.name = p_tz desc limit 1;
  else
    begin
      perform now() at time zone p_tz;
      v_name := p_tz;
    exception when invalid_parameter_value then
      v_name := null;
    end;
  end if;
  if v_name is null then
    perform jobs.raise_invalid('PDC03', 'tz', format('must be an IANA time zone name such as ''Europe/Paris'' (pg_timezone_names), got %s',
      left(quote_literal(p_tz), 80)));
  end if;
  return v_name;
end $$;

-- The first minute after `after` that spec matches on tz's wall clock. As
-- Vixie cron (and croner's fixedTimeRule 'no-wildcard'): a fixed-time spec
-- (no * nor /step in minute and hour) fires once at a wall time that occurs
-- twice (the first time, as the clocks go back), and at the end of the gap
-- for a wall time the clocks skip (02:30 on the day they go from 02:00 to
-- 03:00 fires at 03:00); any other spec fires at every instant whose wall
-- time matches: twice in a repeated hour, never in a skipped one.
create function jobs.cron_spec_next_tz(spec jobs.cron_spec, after timestamptz, tz text)
returns timestamptz language plpgsql immutable as $$
declare
  v_t timestamptz := cron_spec_next_tz.after;  -- searching for instants after v_t,
  v_offset interval := jobs.tz_offset(tz, v_t); -- at which tz has this offset
  v_wall timestamptz;  -- the wall time matched, written as if in UTC
  v_at timestamptz;
  v_change timestamptz;
  v_new interval;
  v_before interval;
begin
  for i in 1..1000 loop
    v_wall := jobs.cron_spec_next(spec, v_t + v_offset);
    if v_wall is null then
      return null;
    end if;
    v_at := v_wall - v_offset;
    v_change := jobs.tz_change(tz, v_offset, v_t, v_at);
    if v_change is null then
      -- A fixed time in the clocks' second pass through a repeated hour ran in the first.
      v_before := jobs.tz_offset(tz, v_at - interval '24 hours');
      if not (spec.fixed and v_before > v_offset and jobs.tz_offset(tz, v_at - (v_before - v_offset)) = v_before) then
        return v_at;
      end if;
      v_t := v_at;
    else
      v_new := jobs.tz_offset(tz, v_change);
      if spec.fixed and v_new > v_offset and v_wall < v_change + v_new then
        return v_change;  -- a fixed time the clocks skipped: at the end of the gap
      end if;
      v_t := v_change - interval '1 microsecond';
      v_offset := v_new;
    end if;
  end loop;
  return null;
end $$;

-- The next tick of a cron expression after `after`, in UTC or, with tz (as
-- jobs.check_tz returns it), on tz's wall clock. Raises PDC01 for a bad
-- expression or one that never fires (0 0 31 2 *), PDC03 naming after for a
-- null one (no tick follows it). Its search_path pinned
-- (and so its helpers'): it runs as whoever calls it (the jobs.schedules
-- view), and a function or operator on that role's path could stand in for
-- a built-in here.
create function jobs.cron_tick(cron text, after timestamptz, tz text)
returns timestamptz language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
  v_spec jobs.cron_spec := jobs.cron_parse(cron_tick.cron);
  v_next timestamptz;
begin
  if cron_tick.after is null then
    perform jobs.raise_invalid('PDC03', 'after', 'must be a timestamp to count from, such as now(), got null');
  end if;
  v_next := case when cron_tick.tz is null then jobs.cron_spec_next(v_spec, cron_tick.after)
                 else jobs.cron_spec_next_tz(v_spec, cron_tick.after, cron_tick.tz) end;
  if v_next is null then
    perform jobs.raise_invalid('PDC01', 'cron', format('%s never fires: no date matches it', quote_literal(cron_tick.cron)));
  end if;
  return v_next;
end $$;

-- The next time (whole minutes) a cron expression fires after `after`, in
-- UTC or on the wall clock of time zone tz ('Europe/Paris'). Raises PDC01
-- for a bad expression or one that never fires, PDC03 naming tz for a name
-- that is not a time zone (jobs.check_tz), PDC03 naming after for a null after.
create function jobs.cron_next(cron text, after timestamptz default now(), tz text default null)
returns timestamptz language sql stable set search_path = pg_catalog, pg_temp as $$
  select jobs.cron_tick(cron_next.cron, cron_next.after, jobs.check_tz(cron_next.tz, false))
$$;
