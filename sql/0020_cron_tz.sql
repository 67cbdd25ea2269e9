-- pgdrain 0020: cron in a time zone: offsets, DST changes, and the next run
-- time (jobs.cron_next).

-- Time zones ------------------------------------------------------------------

-- tz's offset from UTC at instant t (interval '+01:00:00' in Paris in winter).
create function jobs.tz_offset(p_tz text, p_t timestamptz)
returns interval language sql immutable as $$
  select (p_t at time zone p_tz) - (p_t at time zone 'UTC')
$$;

-- The first instant in (p_from, p_to] at which tz's offset is no longer
-- p_offset, or null. Probed a day apart (offsets change months apart) up to
-- the first change, then bisected to the microsecond. A step of the tick's
-- budget per offset probed (sql/0019): a search in a zone crosses every day
-- to its tick (a rule decades apart: some 10,000). Stable, as the searches.
create function jobs.tz_change(p_tz text, p_offset interval, p_from timestamptz, p_to timestamptz)
returns timestamptz language plpgsql stable as $$
declare
  v_hi timestamptz := p_from;
  v_lo timestamptz;
  v_mid timestamptz;
  v_left bigint := jobs.tick_steps_left();
begin
  loop
    v_lo := v_hi;
    v_hi := least(v_hi + interval '24 hours', p_to);
    v_left := v_left - 1;
    if v_left < 0 then
      perform jobs.tick_steps_spent(format('finding when time zone %s changes its offset after %s', p_tz, p_from), v_lo at time zone 'UTC');
    end if;
    exit when jobs.tz_offset(p_tz, v_hi) <> p_offset;
    if v_hi >= p_to then
      perform jobs.tick_steps_keep(v_left);
      return null;
    end if;
  end loop;
  while v_hi - v_lo > interval '1 microsecond' loop
    v_mid := v_lo + (v_hi - v_lo) / 2;
    if jobs.tz_offset(p_tz, v_mid) = p_offset then v_lo := v_mid; else v_hi := v_mid; end if;
    v_left := v_left - 1;
  end loop;
  perform jobs.tick_steps_keep(v_left);
  return v_hi;
end $$;

-- Checks a time zone name and returns it as pg_timezone_names spells it, or
-- null for UTC (null, 'UTC' and its aliases). Raises PDC03 naming tz for a
-- name PostgreSQL does not know as a zone: an abbreviation such as CET or
-- EST (it would read it as a fixed offset, without daylight saving time),
-- a POSIX rule such as 'UTC+3' (whose sign is inverted), or a file of its
-- zone directory that is no zone (posix/…, Factory). p_lookup: always
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
  -- Files of PostgreSQL's zone directory that name no place's zone, which
  -- Intl (TS's checkTz) refuses too: posix/ (a copy of the others),
  -- posixrules, Factory (a placeholder), localtime (the server's own zone).
  if p_tz ~* '^(posix/.*|posixrules|factory|localtime)$' then
    perform jobs.raise_invalid('PDC03', 'tz', format(
      '%s is no IANA time zone name (posix/, posixrules, Factory and localtime are files of PostgreSQL''s zone directory): give one such as %s',
      left(quote_literal(p_tz), 80), case when p_tz ~* '^posix/.' then left(quote_literal(substr(p_tz, 7)), 80) else '''Europe/Paris''' end));
  end if;
  if exists (select from pg_timezone_abbrevs a where a.abbrev = upper(p_tz)) then
    perform jobs.raise_invalid('PDC03', 'tz', format(
      '%s is an abbreviation, which PostgreSQL reads as a fixed offset (no daylight saving time): give a zone name such as ''Europe/Paris''',
      quote_literal(p_tz)));
  end if;
  -- right/: zones counting leap seconds (not in pg_timezone_names), whose
  -- wall clock is some 27 s off UTC's minutes: a tick at 09:00:00 there is
  -- not on a whole minute. Looked up, so refused.
  if p_lookup or p_tz ~ '[0-9]' or p_tz ~* '^right/' then
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
returns timestamptz language plpgsql stable as $$
declare
  v_t timestamptz := cron_spec_next_tz.after;  -- searching for instants after v_t,
  v_offset interval := jobs.tz_offset(tz, v_t); -- at which tz has this offset
  v_wall timestamptz;  -- the wall time matched, written as if in UTC
  v_from timestamptz;  -- the wall time its search started after
  v_at timestamptz;
  v_change timestamptz;
  v_new interval;
  v_before interval;
begin
  for i in 1..1000 loop
    -- The wall times spec matches do not depend on the offset: a match found
    -- from an earlier wall time is still the first after a later one before
    -- it (after an offset change; searched again, a rule decades apart took
    -- each change its whole search's steps again).
    if v_from is null or v_t + v_offset < v_from or v_wall <= v_t + v_offset then
      v_from := v_t + v_offset;
      v_wall := jobs.cron_spec_next(spec, v_from);
    end if;
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
-- null or infinite one (no tick follows it). A recurrence rule (jobs.is_rrule, sql/0037)
-- goes to jobs.rrule_spec_next (sql/0038): null when it has no occurrence left. Its search_path pinned
-- (and so its helpers'): it runs as whoever calls it (the jobs.schedules
-- view), and a function or operator on that role's path could stand in for
-- a built-in here. Its searches take at most a tick's budget of steps
-- (sql/0019: PDC01 past it), its own unless its caller gave one
-- (jobs.publish_due_schedules: one for all of a claim's ticks).
create function jobs.cron_tick(cron text, after timestamptz, tz text)
returns timestamptz language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  v_spec jobs.cron_spec;
  v_next timestamptz;
  v_own boolean := not jobs.tick_steps_under_way();
  v_prior text := current_setting('pgdrain.tick_steps', true);  -- given back when v_own
begin
  if v_own then
    -- Left set only by an error, which its (sub)transaction's rollback undoes.
    perform jobs.tick_steps_give(jobs.max_tick_steps());
  end if;
  if jobs.is_rrule(cron_tick.cron) and isfinite(cron_tick.after) then
    v_next := jobs.rrule_spec_next(jobs.rrule_parse(cron_tick.cron, cron_tick.tz), cron_tick.after);
    if v_own then
      perform set_config('pgdrain.tick_steps', coalesce(v_prior, ''), true);
    end if;
    return v_next;
  elsif jobs.is_rrule(cron_tick.cron) then
    perform jobs.rrule_parse(cron_tick.cron, cron_tick.tz);  -- a bad expression is named first
  else
    v_spec := jobs.cron_parse(cron_tick.cron);
  end if;
  if not coalesce(isfinite(cron_tick.after), false) then
    -- ±infinity: no tick follows it, nor precedes it (not 'never fires', nor a search out of steps).
    perform jobs.raise_invalid('PDC03', 'after', format('must be a timestamp to count from, such as now(), got %s',
      coalesce(cron_tick.after::text, 'null')));
  end if;
  v_next := case when cron_tick.tz is null then jobs.cron_spec_next(v_spec, cron_tick.after)
                 else jobs.cron_spec_next_tz(v_spec, cron_tick.after, cron_tick.tz) end;
  if v_own then
    perform set_config('pgdrain.tick_steps', coalesce(v_prior, ''), true);
  end if;
  if v_next is null then
    perform jobs.raise_invalid('PDC01', 'cron', format('%s never fires: no date matches it', quote_literal(cron_tick.cron)));
  end if;
  return v_next;
end $$;

-- A drain-run schedule's tick after p_after, for jobs.publish_due_schedules,
-- which has published (or skipped) the tick before it. When the search runs
-- out of a whole tick's budget, the rule cannot be computed within one (work
-- that would never finish): next_at is null, `stop` says why ('<error>
-- (SQLSTATE PDC01)') and the budget is spent. Out of a budget earlier
-- searches had spent in part it raises (a whole one may do: the caller
-- leaves the tick due for the next call), as it raises any other error,
-- unless p_any: then any other error is a stop too (a backfill's ticks are
-- known only by computing them: the tick before, published, is kept).
create function jobs.tick_or_stop(p_cron text, p_after timestamptz, p_tz text, p_any boolean default false,
                                  out next_at timestamptz, out stop text)
language plpgsql as $$
declare
  v_whole boolean := jobs.tick_steps_left() >= jobs.max_tick_steps();
  v_hint text;
  v_budget boolean;
begin
  next_at := jobs.cron_tick(p_cron, p_after, p_tz);
exception when others then
  get stacked diagnostics v_hint = pg_exception_hint;
  v_budget := sqlstate = 'PDC01' and v_hint is not distinct from jobs.tick_steps_hint();
  if v_budget and not v_whole or not v_budget and not p_any then
    raise;
  end if;
  if v_budget then
    perform jobs.tick_steps_give(0);
  end if;
  stop := format('%s (SQLSTATE %s)', sqlerrm, sqlstate);
end $$;

-- The next time (whole minutes) a cron expression fires after `after`, in
-- UTC or on the wall clock of time zone tz ('Europe/Paris'). Raises PDC01
-- for a bad expression or one that never fires, PDC03 naming tz for a name
-- that is not a time zone (jobs.check_tz), PDC03 naming after for a null or infinite after.
-- A recurrence rule instead (FREQ=DAILY;BYHOUR=9, sql/0037): its next
-- occurrence, or null when it has none left.
create function jobs.cron_next(cron text, after timestamptz default now(), tz text default null)
returns timestamptz language sql stable set search_path = pg_catalog, pg_temp as $$
  select jobs.cron_tick(cron_next.cron, cron_next.after, jobs.check_tz(cron_next.tz, false))
$$;
