-- pgdrain 0037: RFC 5545 recurrence rules (RRULE) where a schedule takes a
-- cron expression: their text, parsed and checked (jobs.rrule_parse).
-- 0038 evaluates them (jobs.rrule_spec_next), and turns wall times into
-- instants (jobs.rrule_at; jobs.rrule_instant, for UNTIL, RDATE and EXDATE).
--
-- Errors: PDC01 cron, naming the part, line or value at fault.

-- What a schedule's cron text may be instead of a cron expression (told
-- apart as pg-boss tells them, jobs.is_rrule): the RRULE's value alone
-- ('FREQ=DAILY;BYHOUR=9;BYMINUTE=30'), or lines DTSTART[;TZID=zone]:,
-- RRULE:, RDATE[;TZID=zone]: and EXDATE[;TZID=zone]: (a calendar entry's
-- recurrence, without BEGIN/END). Parts: FREQ (MINUTELY to YEARLY; not
-- SECONDLY), INTERVAL (1-10000), COUNT (1-1000, with a DTSTART), UNTIL,
-- BYMONTH, BYMONTHDAY (-31 to 31, not with WEEKLY), BYDAY (ordinals such as
-- 1MO or -1FR with MONTHLY and YEARLY only), BYHOUR, BYMINUTE, BYSECOND,
-- BYSETPOS (with another BY part), WKST. Not BYWEEKNO, BYYEARDAY, RSCALE,
-- SKIP nor X- parts: refused, not ignored. Date-times are YYYYMMDDTHHMMSS,
-- with Z for UTC, else on the wall clock of the line's TZID, DTSTART's
-- TZID or the schedule's tz, in that order; date-only values are refused.
-- No DTSTART: 1970-01-01 00:00 on that wall clock (pg-boss's), which
-- phases INTERVAL and gives the time parts no BY part names (midnight).
create type jobs.rrule_spec as (
  freq      text,
  ival      integer,
  count     integer,
  until     timestamptz,
  months    integer[],
  monthdays integer[],
  bd_w      integer[],   -- BYDAY weekdays, 0 Sunday to 6 Saturday
  bd_n      integer[],   -- and their ordinals (0: every such day)
  hours     integer[],
  minutes   integer[],
  seconds   integer[],
  setpos    integer[],
  wkst      integer,
  dtstart   timestamp,   -- on tz's wall clock
  tz        text,        -- the wall clock it recurs on (null: UTC)
  rdates    timestamptz[],
  exdates   timestamptz[]
);

create function jobs.rrule_invalid(p_expr text, p_message text)
returns void language plpgsql immutable as $$
begin
  perform jobs.raise_invalid('PDC01', 'cron', format('%s (in %s)', p_message, left(quote_literal(p_expr), 200)));
end $$;

-- A date-time value YYYYMMDDTHHMMSS[Z] as written (Z dropped).
create function jobs.rrule_wall(p_value text, p_what text, p_expr text)
returns timestamp language plpgsql immutable as $$
declare
  m text[] := regexp_match(p_value, '^([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z?$');
begin
  if p_value is null then
    return null;
  elsif m is null then
    perform jobs.rrule_invalid(p_expr, format('%s %s must be a date-time such as 20260105T093000 (or 20260105T083000Z in UTC)',
      p_what, left(quote_literal(p_value), 40)));
  end if;
  return make_timestamp(m[1]::integer, m[2]::integer, m[3]::integer, m[4]::integer, m[5]::integer, m[6]::float8);
exception when datetime_field_overflow or invalid_datetime_format then
  perform jobs.rrule_invalid(p_expr, format('%s %s is not a date-time that exists', p_what, quote_literal(p_value)));
end $$;

-- A list part's integers, each in p_lo..p_hi and not 0 when p_nonzero.
create function jobs.rrule_ints(p_part text, p_value text, p_lo integer, p_hi integer, p_nonzero boolean, p_expr text)
returns integer[] language plpgsql immutable as $$
declare
  v_item text;
  v_out integer[] := '{}';
begin
  foreach v_item in array string_to_array(p_value, ',') loop
    if v_item !~ '^[+-]?[0-9]{1,5}$' or v_item::integer not between p_lo and p_hi or (p_nonzero and v_item::integer = 0) then
      perform jobs.rrule_invalid(p_expr, format('%s value %s must be %s from %s to %s', p_part, quote_literal(v_item),
        case when p_nonzero then 'a whole number other than 0' else 'a whole number' end, p_lo, p_hi));
    end if;
    v_out := v_out || v_item::integer;
  end loop;
  return array(select distinct x from unnest(v_out) x order by x);
end $$;

-- A DTSTART, RDATE or EXDATE line's parameters: its TZID (checked), or
-- null; VALUE=DATE-TIME only.
create function jobs.rrule_params(p_line text, p_params text, p_expr text)
returns text language plpgsql stable as $$
declare
  v_param text;
  v_tzid text;
begin
  foreach v_param in array coalesce(string_to_array(nullif(p_params, ''), ';'), '{}') loop
    if upper(v_param) like 'TZID=%' then
      begin
        v_tzid := coalesce(jobs.check_tz(substr(v_param, 6), false), 'UTC');
      exception when sqlstate 'PDC03' then  -- named as part of cron, not as the schedule's tz
        perform jobs.rrule_invalid(p_expr, format('%s TZID %s must be an IANA time zone name such as Europe/Paris',
          p_line, left(quote_literal(substr(v_param, 6)), 80)));
      end;
    elsif upper(v_param) <> 'VALUE=DATE-TIME' then
      perform jobs.rrule_invalid(p_expr, format('%s parameter %s is not supported: give TZID=zone, or none (date-times only)',
        p_line, quote_literal(v_param)));
    end if;
  end loop;
  return v_tzid;
end $$;

-- Parses a recurrence; p_tz is the schedule's zone (null: UTC), which a
-- DTSTART's TZID replaces. Raises PDC01 naming what is wrong.
create function jobs.rrule_parse(p_expr text, p_tz text)
returns jobs.rrule_spec language plpgsql stable as $$
declare
  s jobs.rrule_spec;
  v_line text;
  m text[];
  v_name text;
  v_rule text;
  v_start text;
  v_start_tz text;
  v_dates text[] := '{}';  -- name, tzid, value list, ...
  -- Lines' parameter texts read so far, and their TZIDs: a zone is checked
  -- once per parse, not once per line, and p_tz (checked by the caller: a
  -- schedule's is its DTSTART's TZID) not again. Every tick parses the rule
  -- again, and checking a name with a digit (EST5EDT) reads pg_timezone_names: ~90 ms.
  v_params text[] := case when p_tz is not null then array[';TZID=' || p_tz] else '{}' end;
  v_tzids text[] := case when p_tz is not null then array[p_tz] else '{}' end;
  v_tzid text;
  v_part text;
  v_key text;
  v_value text;
  v_seen text[] := '{}';
  v_item text;
  i integer;
begin
  if p_expr is null or length(p_expr) > 4000 then
    perform jobs.raise_invalid('PDC01', 'cron', 'must be a cron expression or a recurrence rule of at most 4000 characters');
  end if;
  -- A line break then a space or a tab folds a line (RFC 5545 3.1).
  foreach v_line in array regexp_split_to_array(regexp_replace(p_expr, '\r?\n[ \t]', '', 'g'), '\r?\n') loop
    v_line := btrim(v_line, E' \t\r');
    continue when v_line = '';
    m := regexp_match(v_line, '^([A-Za-z][A-Za-z0-9-]*)((?:;[^:;]*)*):(.*)$');
    v_name := upper(m[1]);
    if v_name in ('DTSTART', 'RDATE', 'EXDATE') then
      i := array_position(v_params, m[2]);
      if i is null then
        v_tzids := v_tzids || jobs.rrule_params(v_name, substr(m[2], 2), p_expr);
        v_params := v_params || m[2];
        i := cardinality(v_params);
      end if;
      v_tzid := v_tzids[i];
    end if;
    if m is null or v_name = 'RRULE' then
      if v_rule is not null then
        perform jobs.rrule_invalid(p_expr, 'has more than one RRULE');
      end if;
      v_rule := coalesce(m[3], v_line);
    elsif v_name = 'DTSTART' then
      if v_start is not null then
        perform jobs.rrule_invalid(p_expr, 'has more than one DTSTART');
      end if;
      v_start := m[3];
      v_start_tz := v_tzid;
    elsif v_name in ('RDATE', 'EXDATE') then
      v_dates := v_dates || array[v_name, v_tzid, m[3]];
    else
      perform jobs.rrule_invalid(p_expr, format('line %s is not supported: give DTSTART, RRULE, RDATE and EXDATE lines only',
        quote_literal(left(v_line, 40))));
    end if;
  end loop;
  if v_rule is null then
    perform jobs.rrule_invalid(p_expr, 'has no RRULE to recur on');
  end if;
  s.tz := coalesce(nullif(v_start_tz, 'UTC'), case when v_start_tz is null then p_tz end);
  s.dtstart := coalesce(case when v_start like '%Z' then jobs.rrule_wall(v_start, 'DTSTART', p_expr) at time zone 'UTC' at time zone coalesce(s.tz, 'UTC')
                             else jobs.rrule_wall(v_start, 'DTSTART', p_expr) end,
                        timestamp '1970-01-01 00:00');
  s.ival := 1;
  s.wkst := 1;
  foreach v_part in array string_to_array(v_rule, ';') loop
    continue when v_part = '';
    v_key := upper(split_part(v_part, '=', 1));
    v_value := upper(substr(v_part, length(v_key) + 2));
    if v_part !~ '^[A-Za-z-]+=.' then
      perform jobs.rrule_invalid(p_expr, format('RRULE part %s must be NAME=VALUE', quote_literal(v_part)));
    elsif v_key = any(v_seen) then
      perform jobs.rrule_invalid(p_expr, format('RRULE has more than one %s part', v_key));
    end if;
    v_seen := v_seen || v_key;
    if v_key in ('FREQ', 'INTERVAL', 'COUNT', 'UNTIL', 'WKST') and v_value like '%,%' then
      perform jobs.rrule_invalid(p_expr, format('RRULE part %s takes one value, not a list', quote_literal(v_part)));
    end if;
    case v_key
    when 'FREQ' then
      if v_value = 'SECONDLY' then
        perform jobs.rrule_invalid(p_expr, 'FREQ=SECONDLY is not supported: a schedule ticks at most 1440 times a day (MINUTELY, or BYSECOND with a longer FREQ)');
      elsif v_value not in ('MINUTELY', 'HOURLY', 'DAILY', 'WEEKLY', 'MONTHLY', 'YEARLY') then
        perform jobs.rrule_invalid(p_expr, format('FREQ %s must be MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY', quote_literal(v_value)));
      end if;
      s.freq := v_value;
    when 'INTERVAL' then s.ival := (jobs.rrule_ints('INTERVAL', v_value, 1, 10000, false, p_expr))[1];
    when 'COUNT' then s.count := (jobs.rrule_ints('COUNT', v_value, 1, 1000, false, p_expr))[1];
    when 'UNTIL' then s.until := jobs.rrule_instant(v_value, s.tz, 'UNTIL', p_expr);
    when 'BYMONTH' then s.months := jobs.rrule_ints('BYMONTH', v_value, 1, 12, false, p_expr);
    when 'BYMONTHDAY' then s.monthdays := jobs.rrule_ints('BYMONTHDAY', v_value, -31, 31, true, p_expr);
    when 'BYHOUR' then s.hours := jobs.rrule_ints('BYHOUR', v_value, 0, 23, false, p_expr);
    when 'BYMINUTE' then s.minutes := jobs.rrule_ints('BYMINUTE', v_value, 0, 59, false, p_expr);
    when 'BYSECOND' then s.seconds := jobs.rrule_ints('BYSECOND', v_value, 0, 59, false, p_expr);
    when 'BYSETPOS' then s.setpos := jobs.rrule_ints('BYSETPOS', v_value, -366, 366, true, p_expr);
    when 'WKST' then
      s.wkst := array_position('{SU,MO,TU,WE,TH,FR,SA}'::text[], v_value) - 1;
      if s.wkst is null then
        perform jobs.rrule_invalid(p_expr, format('WKST %s must be one of MO, TU, WE, TH, FR, SA, SU', quote_literal(v_value)));
      end if;
    when 'BYDAY' then
      s.bd_w := '{}';
      s.bd_n := '{}';
      foreach v_item in array string_to_array(v_value, ',') loop
        m := regexp_match(v_item, '^([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)$');
        if m is null or m[1]::integer = 0 or abs(m[1]::integer) > 53 then
          perform jobs.rrule_invalid(p_expr, format('BYDAY value %s must be a weekday MO to SU, with an optional ordinal from -53 to 53 other than 0 (1MO, -1FR)',
            quote_literal(v_item)));
        end if;
        s.bd_w := s.bd_w || array_position('{SU,MO,TU,WE,TH,FR,SA}'::text[], m[2]) - 1;
        s.bd_n := s.bd_n || coalesce(m[1]::integer, 0);
      end loop;
    when 'BYWEEKNO', 'BYYEARDAY', 'RSCALE', 'SKIP' then
      perform jobs.rrule_invalid(p_expr, format('RRULE part %s is not supported here (supported: FREQ, INTERVAL, COUNT, UNTIL, BYMONTH, BYMONTHDAY, BYDAY, BYHOUR, BYMINUTE, BYSECOND, BYSETPOS, WKST)',
        quote_literal(v_part)));
    else
      perform jobs.rrule_invalid(p_expr, format('RRULE part %s is not an RFC 5545 rule part (FREQ, INTERVAL, COUNT, UNTIL, BYMONTH, BYMONTHDAY, BYDAY, BYHOUR, BYMINUTE, BYSECOND, BYSETPOS, WKST)',
        quote_literal(v_part)));
    end case;
  end loop;
  if s.freq is null then
    perform jobs.rrule_invalid(p_expr, 'RRULE needs a FREQ part (FREQ=DAILY, say)');
  elsif s.count is not null and s.until is not null then
    perform jobs.rrule_invalid(p_expr, 'RRULE has both COUNT and UNTIL, which RFC 5545 forbids: give one');
  elsif s.count is not null and v_start is null then
    perform jobs.rrule_invalid(p_expr, 'RRULE uses COUNT, which counts occurrences from DTSTART, so it needs a DTSTART line');
  elsif s.monthdays is not null and s.freq = 'WEEKLY' then
    perform jobs.rrule_invalid(p_expr, 'BYMONTHDAY cannot be used with FREQ=WEEKLY (RFC 5545)');
  elsif s.bd_n is not null and exists (select from unnest(s.bd_n) n where n <> 0)
        and (s.freq not in ('MONTHLY', 'YEARLY') or s.freq = 'MONTHLY' and exists (select from unnest(s.bd_n) n where abs(n) > 5)) then
    perform jobs.rrule_invalid(p_expr, 'BYDAY ordinals (1MO, -1FR) need FREQ=MONTHLY (-5 to 5) or FREQ=YEARLY');
  elsif s.setpos is not null and s.months is null and s.monthdays is null and s.bd_w is null and s.hours is null
        and s.minutes is null and s.seconds is null then
    perform jobs.rrule_invalid(p_expr, 'BYSETPOS needs another BY part to pick from (RFC 5545)');
  elsif coalesce(cardinality(s.hours), case when s.freq in ('HOURLY', 'MINUTELY') then 24 else 1 end)
        * coalesce(cardinality(s.minutes), case when s.freq = 'MINUTELY' then 60 else 1 end)
        * coalesce(cardinality(s.seconds), 1) > 1440 then
    perform jobs.rrule_invalid(p_expr, 'BYHOUR, BYMINUTE and BYSECOND give more than 1440 times a day: a schedule ticks at most that often');
  end if;
  for i in 1..cardinality(v_dates) / 3 loop
    foreach v_item in array string_to_array(v_dates[3 * i], ',') loop
      if v_dates[3 * i - 2] = 'RDATE' then
        s.rdates := coalesce(s.rdates, '{}') || jobs.rrule_instant(v_item, coalesce(nullif(v_dates[3 * i - 1], 'UTC'),
          case when v_dates[3 * i - 1] is null then s.tz end), 'RDATE', p_expr);
      else
        s.exdates := coalesce(s.exdates, '{}') || jobs.rrule_instant(v_item, coalesce(nullif(v_dates[3 * i - 1], 'UTC'),
          case when v_dates[3 * i - 1] is null then s.tz end), 'EXDATE', p_expr);
      end if;
    end loop;
  end loop;
  return s;
end $$;
