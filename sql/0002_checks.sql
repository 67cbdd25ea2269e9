-- pgdrain 0002: input checks, raising errors of class PD that name the
-- offending field.
--
-- Errors raised here use SQLSTATE class PD and name the offending field in
-- the COLUMN diagnostic field (node-pg: error.column). Every code, PD001 to
-- PD021, and the fields each names: docs/sql-api.md, Errors. The checks of
-- a job's options and a claim's size: sql/0043.

-- Input checks ---------------------------------------------------------------

create function jobs.raise_invalid(p_code text, p_field text, p_message text)
returns void language plpgsql volatile as $$
begin
  raise exception '%: %', p_field, p_message using errcode = p_code, column = p_field;
end $$;

-- Whether each statement sees what others committed before it: READ
-- COMMITTED, or READ UNCOMMITTED, which PostgreSQL runs as READ COMMITTED
-- (not REPEATABLE READ's or SERIALIZABLE's one snapshot). SQL: inlined.
create function jobs.read_committed()
returns boolean language sql stable as $$
  select current_setting('transaction_isolation') in ('read committed', 'read uncommitted')
$$;

-- The clock of a function that takes an injected `now` (its tests' clock):
-- now as given, or the transaction's time when null. A time at ±infinity is
-- no clock (every lease, backoff and expiry computed from it would be
-- infinite, or fail deep inside): PD007 naming now; a time that is not the
-- transaction's own, only from an admin (jobs.check_now, below). One call
-- per public call, never per job.
create function jobs.clock(p_now timestamptz)
returns timestamptz language plpgsql stable as $$
begin
  if not isfinite(p_now) then
    perform jobs.raise_invalid('PD007', 'now', format('must be a finite time or null, got %s', p_now));
  end if;
  if p_now <> pg_catalog.now() then perform jobs.check_now(p_now); end if;  -- another clock: an admin's
  return coalesce(p_now, pg_catalog.now());
end $$;

-- The time a publish's expiry and throttle window, and a nack's backoff,
-- count from, given the caller's `now` (p_now) and jobs.clock's answer
-- (p_clock): with no `now`, the time of the call, not the transaction's
-- start (now()). Called inside a transaction open for a while (psql, a
-- PL/pgSQL loop, a trigger in an import), now() + a duration could already
-- have passed when the call runs: a job that expired before anyone could
-- see it, a window closed before its job was written, a retry with no
-- backoff. With a `now` given (an admin's clock), that time. (jobs.claim's
-- and jobs.extend_lease's leases count from the call the same way.)
create function jobs.call_time(p_now timestamptz, p_clock timestamptz)
returns timestamptz language sql volatile as $$
  select case when p_now is null then greatest(p_clock, clock_timestamp()) else p_clock end
$$;

-- Whether a text given is empty or only whitespace (space, tab, newline,
-- carriage return, form feed, vertical tab): where an empty text is refused
-- (a key, a topic pattern, a worker id), so is a blank one. Inlined (no
-- call) where it is read per element (jobs.publish_arrays' keys); the btrim
-- (which reads the whole text: 0.4 us a key) only for a text that starts
-- with whitespace, the first character's code otherwise.
create function jobs.blank(p_value text)
returns boolean language sql immutable as $$
  select p_value = '' or ascii(p_value) in (9, 10, 11, 12, 13, 32) and btrim(p_value, E' \t\n\r\f\x0b') = ''
$$;

-- A claim's worker_id (recorded on the jobs it claims): null, or a text of
-- 1 to 200 characters, not only whitespace, as the TypeScript workerId.
create function jobs.check_worker_id(p_worker_id text)
returns void language plpgsql immutable as $$
begin
  if jobs.blank(p_worker_id) or length(p_worker_id) > 200 then
    perform jobs.raise_invalid('PD005', 'worker_id', format(
      'must be a non-empty text of at most 200 characters, not only whitespace, or null, got %s',
      left(quote_literal(p_worker_id), 80)));
  end if;
end $$;

-- An admin call's reason (jobs.cancel, cancel_bulk, cancel_key, fail,
-- purge_queue), recorded as the jobs' error after 'cancelled: ' or
-- 'failed: ': null for the default ('by request', a purge's 'purged'), else
-- not empty nor only whitespace, as every other text an admin call takes
-- (a blank one recorded 'failed: ', saying nothing).
create function jobs.check_reason(p_reason text)
returns void language plpgsql immutable as $$
begin
  if jobs.blank(p_reason) then
    perform jobs.raise_invalid('PD021', 'reason', format(
      'must be a non-empty text, not only whitespace, or null (the default reason), got %s', quote_literal(p_reason)));
  end if;
end $$;

-- A `now` given by the caller (jobs.clock): the SECURITY
-- DEFINER functions act on every job at that time, so a publisher or worker
-- could otherwise expire every lease (jobs.expire(now => 'infinity')), push
-- drain-run schedules past a far date, or backdate ends. A time outside the
-- caller's own transaction (its now() to the clock, as a transactional ack's
-- clock_timestamp()) only from a role that may run jobs.maintain (owner,
-- admin, superuser; anyone before migrate --roles), else 42501. The caller is
-- the session's role (SET ROLE, as PostgREST sets it), not the definer.
create function jobs.check_now(p_now timestamptz, p_field text default 'now')
returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_caller text := coalesce(nullif(current_setting('role'), 'none'), session_user);
begin
  if p_now is null or (p_now >= now() and p_now <= clock_timestamp())
     or has_function_privilege(v_caller, 'jobs.maintain(interval, boolean, integer, timestamptz, boolean)', 'execute') then
    return;
  end if;
  raise exception '%: role % may not set the clock (only a role that may run jobs.maintain does): give null, the time now, got %',
    p_field, v_caller, p_now using errcode = '42501', column = p_field;
end $$;

-- A task is one or more dot-separated words of letters, digits, _ : and -,
-- at most 200 characters: email.send, billing.invoice_v2, sql:reports.daily.
create function jobs.check_task(p_task text, p_field text default 'task')
returns void language plpgsql immutable as $$
begin
  if p_task is null or p_task = '' then
    perform jobs.raise_invalid('PD001', p_field, 'must be a non-empty task name');
  elsif length(p_task) > 200 or p_task !~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$' then
    perform jobs.raise_invalid('PD001', p_field, format(
      'must be dot-separated words of letters, digits, _ : or - (at most 200 characters), got %s',
      left(quote_literal(p_task), 80)));
  end if;
end $$;

-- Names of queues follow the rule of task names.
create function jobs.check_name(p_value text, p_code text, p_field text, p_what text)
returns void language plpgsql immutable as $$
begin
  if p_value is null or p_value = '' or length(p_value) > 200
     or p_value !~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$' then
    perform jobs.raise_invalid(p_code, p_field, format(
      'must be a %s: dot-separated words of letters, digits, _ : or - (at most 200 characters), got %s',
      p_what, coalesce(left(quote_literal(p_value), 80), 'null')));
  end if;
end $$;

create function jobs.check_key(p_value text, p_code text, p_field text)
returns void language plpgsql immutable as $$
begin
  if p_value is not null and (jobs.blank(p_value) or length(p_value) > 500) then
    perform jobs.raise_invalid(p_code, p_field, 'must be a non-empty text of at most 500 characters');
  end if;
end $$;

-- A job's group (jobs.publish's group_id, group_tier; p_prefix: 'jobs[3].'
-- in a bulk): each a non-empty text of at most 200 characters, not only
-- whitespace (jobs.blank), a tier only with a group.
create function jobs.check_group(p_id text, p_tier text, p_prefix text default '')
returns void language plpgsql immutable as $$
begin
  if jobs.blank(p_id) or length(p_id) > 200 then
    perform jobs.raise_invalid('PD019', p_prefix || 'group_id', 'must be a non-empty text of at most 200 characters, not only whitespace');
  elsif jobs.blank(p_tier) or length(p_tier) > 200 then
    perform jobs.raise_invalid('PD019', p_prefix || 'group_tier', 'must be a non-empty text of at most 200 characters, not only whitespace');
  elsif p_tier is not null and p_id is null then
    perform jobs.raise_invalid('PD019', p_prefix || 'group_tier', 'needs a group_id (the group whose tier it names)');
  end if;
end $$;

create function jobs.check_object(p_value jsonb, p_field text)
returns void language plpgsql immutable as $$
begin
  if p_value is not null and jsonb_typeof(p_value) <> 'object' then
    perform jobs.raise_invalid('PD014', p_field, format('must be a JSON object, got %s', jsonb_typeof(p_value)));
  end if;
end $$;

-- An error as a job keeps it: at most 8192 characters, the marker
-- included; past that its head, then '\n… (N characters cut)'. A handler's
-- error can hold megabytes (an HTTP client's, with the response body), which
-- would be stored whole in the job, its history and every settle that
-- carries it. The drain cuts by the same rule first (src/error-text.ts), so
-- what it sends is never cut twice.
create function jobs.cut_error(p_error text)
returns text language sql immutable as $$
  select case when length(p_error) <= 8192 then p_error
              else left(p_error, 8128) || format(E'\n… (%s characters cut)', length(p_error) - 8128) end
$$;

-- The error a nack or fail records: the one given, else a default naming
-- the outcome, so a job never fails (or waits to retry) with no error
-- recorded (jobs.nack(id, null), errors holding a null). Inlined.
create function jobs.settle_error(p_outcome text, p_error text)
returns text language sql immutable as $$
  select coalesce(p_error, case when p_outcome = 'fail' then 'failed without an error' else 'nacked without an error' end)
$$;

-- A pgdrain time setting p_name in milliseconds (null when not set), read as
-- PostgreSQL reads its own (lock_timeout): a bare number is ms, else a unit
-- us, ms, s, min, h or d; rounded, at most 2147483647. Anything else is
-- refused, PDC03 naming the setting, the rule and how to fix it.
create function jobs.setting_ms(p_name text)
returns bigint language plpgsql stable as $$
declare
  v_set text := nullif(current_setting(p_name, true), '');
  v_parts text[] := regexp_match(v_set, '^\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*(us|ms|s|min|h|d)?\s*$');
begin
  if v_set is not null and v_parts is null then
    perform jobs.raise_invalid('PDC03', p_name, format(
      'must be a duration as PostgreSQL''s time settings take one: milliseconds (500) or a number with a unit, us, ms, s, min, h or d (''2s'', ''1.5s'', ''1min''), got %s: set it to one (ALTER ROLE ... SET %s = ''2s'', or SET for a session), or RESET it for the default',
      left(quote_literal(v_set), 80), p_name));
  end if;
  return least(round(v_parts[1]::numeric * case v_parts[2] when 'us' then 0.001 when 's' then 1000 when 'min' then 60000
                                                         when 'h' then 3600000 when 'd' then 86400000 else 1 end),
               case when v_set is not null then 2147483647 end);  -- least() skips a null: not set, null
end $$;
