-- pgdrain 0038: the next occurrence of a recurrence rule
-- (jobs.rrule_spec_next), which jobs.cron_tick (and so jobs.cron_next and
-- the schedules) uses for a text jobs.is_rrule tells apart from cron.
--
-- Occurrences are wall times on the rule's clock (RFC 5545), turned into
-- instants as cron's are (jobs.rrule_at). The search starts at the period
-- (year, month, week; day for DAILY, HOURLY and MINUTELY) holding `after`,
-- never at DTSTART: its work is one chunk of days at a time, not one step
-- per occurrence since DTSTART. COUNT is the exception: occurrences are
-- counted from DTSTART, which is why COUNT is at most 1000. None within a
-- century of `after`: null, as when COUNT or UNTIL ended the rule. Either
-- search takes at most a tick's budget of steps (sql/0019), PDC01 past it:
-- a rule so sparse, or a DTSTART so far back, cannot be a schedule's.
--
-- Wall times to instants first: jobs.rrule_parse (sql/0037, PL/pgSQL: it
-- resolves them when it runs) reads UNTIL, RDATE and EXDATE with them.

-- The instant of wall time p_wall on tz's clock (null: UTC), as cron reads
-- wall times (jobs.cron_spec_next_tz): a time the clocks skip is the end of
-- the gap (02:30 on the day they go from 02:00 to 03:00: 03:00), a time
-- they pass twice is the first of them.
create function jobs.rrule_at(p_wall timestamp, p_tz text)
returns timestamptz language plpgsql immutable as $$
declare
  v_at timestamptz;
  v_offset interval;
  v_before interval;
begin
  if p_tz is null then
    return p_wall at time zone 'UTC';
  end if;
  v_at := p_wall at time zone p_tz;  -- PostgreSQL: a skipped time on the offset before, a repeated one the second
  if v_at at time zone p_tz <> p_wall then
    return jobs.tz_change(p_tz, jobs.tz_offset(p_tz, v_at - interval '1 day'), v_at - interval '1 day', v_at);
  end if;
  v_offset := jobs.tz_offset(p_tz, v_at);
  v_before := jobs.tz_offset(p_tz, v_at - interval '1 day');
  if v_before > v_offset and jobs.tz_offset(p_tz, v_at - (v_before - v_offset)) = v_before then
    return v_at - (v_before - v_offset);
  end if;
  return v_at;
end $$;

-- A date-time value as an instant: Z in UTC, else on p_tz's wall clock.
create function jobs.rrule_instant(p_value text, p_tz text, p_what text, p_expr text)
returns timestamptz language sql immutable as $$
  select case when p_value like '%Z' then jobs.rrule_wall(p_value, p_what, p_expr) at time zone 'UTC'
              else jobs.rrule_at(jobs.rrule_wall(p_value, p_what, p_expr), p_tz) end
$$;

-- d's rank among the days of its weekday in its month (p_month) or year:
-- 1 for the first, 2 for the second, ...; with p_last -1 for the last.
create function jobs.rrule_nth(d date, p_month boolean, p_last boolean)
returns integer language sql immutable as $$
  select case when not p_last then (day_in - 1) / 7 + 1 else -((days - day_in) / 7 + 1) end
  from (select case when p_month then extract(day from d)::integer else extract(doy from d)::integer end as day_in,
               case when p_month then extract(day from date_trunc('month', d) + interval '1 month - 1 day')::integer
                    else extract(doy from make_date(extract(year from d)::integer, 12, 31))::integer end as days) x
$$;

-- Whether day d passes the rule's day parts (BYMONTH, BYMONTHDAY, BYDAY),
-- or, with none of them, is DTSTART's day of the year, month or week.
create function jobs.rrule_day_ok(s jobs.rrule_spec, d date)
returns boolean language plpgsql immutable as $$
declare
  v_dom integer := extract(day from d)::integer;
  v_dow integer := extract(dow from d)::integer;
  v_ok boolean := s.bd_w is null;
begin
  if s.months is not null and extract(month from d)::integer <> all(s.months) then
    return false;
  elsif s.monthdays is not null and v_dom <> all(s.monthdays)
        and v_dom - extract(day from date_trunc('month', d) + interval '1 month - 1 day')::integer - 1 <> all(s.monthdays) then
    return false;
  end if;
  for i in 1..coalesce(cardinality(s.bd_w), 0) loop
    if s.bd_w[i] = v_dow and (s.bd_n[i] = 0 or s.bd_n[i] = jobs.rrule_nth(d, s.freq = 'MONTHLY' or s.months is not null, s.bd_n[i] < 0)) then
      v_ok := true;
      exit;
    end if;
  end loop;
  return v_ok and case s.freq
    when 'YEARLY' then s.monthdays is not null or s.bd_w is not null
                       or (s.months is not null or extract(month from d) = extract(month from s.dtstart)) and v_dom = extract(day from s.dtstart)
    when 'MONTHLY' then s.monthdays is not null or s.bd_w is not null or v_dom = extract(day from s.dtstart)
    when 'WEEKLY' then s.bd_w is not null or v_dow = extract(dow from s.dtstart)
    else true end;
end $$;

-- The slots of the chunk starting at p, in order: days for YEARLY,
-- MONTHLY, WEEKLY (the period) and DAILY (a month of them, INTERVAL's
-- days); hours (HOURLY) or minutes (MINUTELY) of day p on INTERVAL's
-- phase, that BYHOUR and BYMINUTE keep. An occurrence is a slot plus one
-- of the rule's offsets (jobs.rrule_offsets). plpgsql, not sql: its
-- queries' plans are kept, not made again for every chunk.
create function jobs.rrule_slots(s jobs.rrule_spec, p timestamp)
returns timestamp[] language plpgsql immutable as $$
declare
  v_minutes integer := case s.freq when 'HOURLY' then 60 else 1 end;  -- a slot's length
  v_base bigint;  -- the slots since DTSTART's hour (minute) to p
begin
  if s.freq in ('HOURLY', 'MINUTELY') then
    if not jobs.rrule_day_ok(s, p::date) then
      return '{}';
    end if;
    v_base := floor(extract(epoch from p - date_trunc(case s.freq when 'HOURLY' then 'hour' else 'minute' end, s.dtstart)) / 60 / v_minutes);
    return array(
      select p + make_interval(hours => h, mins => mi)
      from unnest(coalesce(s.hours, array(select generate_series(0, 23)))) h,
           unnest(case when s.freq = 'HOURLY' then '{0}' else coalesce(s.minutes, array(select generate_series(0, 59))) end) mi
      where mod(v_base + (h * 60 + mi) / v_minutes, s.ival) = 0
      order by h, mi);
  end if;
  return array(
    select d from generate_series(p, p + case s.freq when 'YEARLY' then interval '1 year' when 'WEEKLY' then interval '7 days'
                                                 else interval '1 month' end - interval '1 day', interval '1 day') d
    where jobs.rrule_day_ok(s, d::date) and (s.freq <> 'DAILY' or mod(d::date - s.dtstart::date, s.ival) = 0)
    order by d);
end $$;

-- The offsets from a slot to its occurrences, in order: times of day
-- (BYHOUR, BYMINUTE, BYSECOND, else DTSTART's), of the hour (HOURLY:
-- minutes and seconds) or of the minute (MINUTELY: seconds).
create function jobs.rrule_offsets(s jobs.rrule_spec)
returns interval[] language sql immutable as $$
  select array(
    select make_interval(hours => case when s.freq in ('HOURLY', 'MINUTELY') then 0 else h end,
                         mins => case when s.freq = 'MINUTELY' then 0 else mi end, secs => se)
    from unnest(coalesce(s.hours, array[extract(hour from s.dtstart)::integer])) h,
         unnest(coalesce(s.minutes, array[extract(minute from s.dtstart)::integer])) mi,
         unnest(coalesce(s.seconds, array[floor(extract(second from s.dtstart))::integer])) se
    group by 1 order by 1)
$$;

-- The first occurrence of s (jobs.rrule_parse) after `after`, or null: none
-- left (COUNT, UNTIL), or none within a century.
create function jobs.rrule_spec_next(s jobs.rrule_spec, after timestamptz)
returns timestamptz language plpgsql stable as $$
declare
  -- No occurrence after `after` is on an earlier wall time (an hour the
  -- clocks go back through within a day lowers it).
  v_low timestamp := case when s.tz is null then after at time zone 'UTC'
                          else least(after at time zone s.tz, (after at time zone 'UTC') + jobs.tz_offset(s.tz, after + interval '1 day')) end;
  v_unit text := case s.freq when 'YEARLY' then 'year' when 'MONTHLY' then 'month' when 'WEEKLY' then 'week'
                             when 'DAILY' then 'month' else 'day' end;
  v_step integer := case when s.freq in ('YEARLY', 'MONTHLY', 'WEEKLY') then s.ival else 1 end;
  v_first timestamp;  -- the chunk holding DTSTART: chunk k starts k units after it
  v_offs interval[] := jobs.rrule_offsets(s);
  v_each interval[];
  v_last interval;
  v_until timestamp;  -- no chunk starting after it holds an occurrence before UNTIL
  v_end timestamp;
  v_rdate timestamptz := (select min(x) from unnest(s.rdates) x where x > after and x <> all(coalesce(s.exdates, '{}')));
  v_slots timestamp[];
  v_slot timestamp;
  v_off interval;
  v_wall timestamp;
  v_at timestamptz;
  v_p timestamp;
  v_n integer := 0;
  v_size integer;
  k bigint := 0;
  -- The tick's budget (sql/0019): a chunk costs the days rrule_slots
  -- examines, its candidate times of day by the 64 (MINUTELY: up to 1440),
  -- and 8 for the chunk itself; a month skipped whole costs 1.
  v_left bigint := jobs.tick_steps_left();
  v_cost integer := case v_unit when 'year' then 366 when 'month' then 31 when 'week' then 7 else 1 end + 8
                    + case when s.freq in ('HOURLY', 'MINUTELY')
                           then coalesce(cardinality(s.hours), 24) * case when s.freq = 'MINUTELY' then coalesce(cardinality(s.minutes), 60) else 1 end / 64
                           else 0 end;
begin
  v_first := case v_unit when 'week' then date_trunc('day', s.dtstart) - make_interval(days => (extract(dow from s.dtstart)::integer - s.wkst + 7) % 7)
                         else date_trunc(v_unit, s.dtstart) end;
  if s.setpos is not null and s.freq in ('DAILY', 'HOURLY', 'MINUTELY') then
    -- BYSETPOS picks among each slot's (day's, hour's, minute's) occurrences: the same offsets every slot.
    v_offs := array(select v_offs[q] from (select distinct case when sp > 0 then sp else cardinality(v_offs) + sp + 1 end q
                                          from unnest(s.setpos) sp) x
                    where q between 1 and cardinality(v_offs) order by q);
  end if;
  -- Each slot's occurrences: its offsets, or (BYSETPOS by period, below) the slot itself.
  v_each := case when s.setpos is not null and s.freq in ('YEARLY', 'MONTHLY', 'WEEKLY') then array[interval '0'] else v_offs end;
  v_last := v_each[cardinality(v_each)];
  v_until := s.until at time zone coalesce(s.tz, 'UTC') + interval '1 day';
  v_end := greatest(v_low, s.dtstart) + interval '100 years';
  -- No chunk starting a day past the next RDATE's wall time holds an
  -- earlier occurrence: the RDATE is the answer (least ignores a null).
  v_end := least(v_end, v_rdate at time zone coalesce(s.tz, 'UTC') + interval '1 day');
  if s.count is null and v_low > v_first then
    k := case v_unit when 'year' then extract(year from v_low) - extract(year from v_first)
                     when 'month' then (extract(year from v_low) - extract(year from v_first)) * 12
                                       + extract(month from v_low) - extract(month from v_first)
                     when 'week' then (v_low::date - v_first::date) / 7
                     else v_low::date - v_first::date end;
    k := (k + v_step - 1) / v_step * v_step;  -- the chunk holding v_low, or the next one on INTERVAL's phase
  end if;
  <<chunks>>
  loop
    v_p := v_first + case v_unit when 'year' then make_interval(years => k::integer) when 'month' then make_interval(months => k::integer)
                                 when 'week' then make_interval(days => 7 * k::integer) else make_interval(days => k::integer) end;
    exit when v_p > v_end or v_p > v_until;
    if s.freq <> 'YEARLY' and s.months is not null and extract(month from v_p)::integer <> all(s.months)
       and extract(month from v_p) = extract(month from v_p + interval '6 days') then
      -- A chunk wholly in a month BYMONTH leaves out: none; HOURLY and MINUTELY go on at the next month.
      k := k + case when v_unit = 'day' then (date_trunc('month', v_p) + interval '1 month')::date - v_p::date else v_step end;
      v_left := v_left - 1;
      continue;
    end if;
    v_left := v_left - v_cost;
    if v_left < 0 and s.count is not null and v_p <= v_low then
      perform jobs.tick_steps_spent(format('counting the occurrences of COUNT from DTSTART %s to %s%s (give a later DTSTART, with the COUNT left)',
                                           s.dtstart, v_low, ' ' || s.tz), v_p);
    elsif v_left < 0 then
      perform jobs.tick_steps_spent(format('finding the occurrence after %s%s', v_low, ' ' || s.tz), v_p);
    end if;
    v_slots := jobs.rrule_slots(s, v_p);
    if s.setpos is not null and s.freq in ('YEARLY', 'MONTHLY', 'WEEKLY') then
      -- BYSETPOS picks among the period's occurrences (its slots times the offsets, in order): each an occurrence.
      v_size := cardinality(v_slots) * cardinality(v_offs);
      v_slots := array(select v_slots[(q - 1) / cardinality(v_offs) + 1] + v_offs[(q - 1) % cardinality(v_offs) + 1]
                       from (select distinct case when sp > 0 then sp else v_size + sp + 1 end q from unnest(s.setpos) sp) x
                       where q between 1 and v_size order by q);
    end if;
    foreach v_slot in array v_slots loop
      -- A slot wholly before `after`: only counted.
      if v_slot >= s.dtstart and v_slot + v_last < v_low then
        v_n := v_n + cardinality(v_each);
        exit chunks when v_n >= s.count;
        continue;
      end if;
      foreach v_off in array v_each loop
        v_wall := v_slot + v_off;
        continue when v_wall < s.dtstart;
        v_n := v_n + 1;
        exit chunks when v_n > s.count;
        continue when v_wall < v_low;
        v_at := jobs.rrule_at(v_wall, s.tz);
        exit chunks when v_at > s.until;
        if v_at > after and v_at <> all(coalesce(s.exdates, '{}')) then
          perform jobs.tick_steps_keep(v_left);
          return least(v_at, v_rdate);
        end if;
      end loop;
    end loop;
    k := k + v_step;
  end loop;
  perform jobs.tick_steps_keep(v_left);
  return v_rdate;
end $$;
