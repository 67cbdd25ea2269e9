-- pgdrain 0026: HTTP drains posted by pg_cron through pg_net.

-- HTTP drains -----------------------------------------------------------------

-- Where to post: one row per registered HTTP drain. The token stays here,
-- out of cron.job's command text and pg_cron's run log, readable by the
-- owner only: jobs.create_roles grants this table to no role (an admin
-- changes it through jobs.schedule_http_drain, which replaces the token).
create table jobs.http_drain (
  name       text    primary key,
  url        text    not null,
  token      text,
  body       jsonb   not null,
  timeout_ms integer not null
);
revoke all on jobs.http_drain from public;

-- Posts to a registered HTTP drain endpoint through pg_net (asynchronous:
-- returns pg_net's request id; the answer lands in net._http_response).
create function jobs.run_http_drain(name text default 'default')
returns bigint language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  r jobs.http_drain;
  v_id bigint;
begin
  select * into r from jobs.http_drain h where h.name = run_http_drain.name;
  if not found then
    perform jobs.raise_invalid('PDC02', 'name', format('no HTTP drain named %s', quote_literal(run_http_drain.name)));
  end if;
  execute 'select net.http_post(url := $1, body := $2, headers := $3, timeout_milliseconds := $4)'
    into v_id
    using r.url, r.body,
          jsonb_build_object('Content-Type', 'application/json')
            || case when r.token is null then '{}'::jsonb else jsonb_build_object('Authorization', 'Bearer ' || r.token) end,
          r.timeout_ms;
  return v_id;
end $$;

-- Whether POST /drain keeps every number in p_value as written: it reads
-- the text pg_net posts (jsonb's: 1e3 as 1000, 1e20 as 100000000000000000000)
-- as doubles, and refuses an integer past 2^53 (src/json-text.ts parseJson)
-- or over a double's range (1e400); a number it would read as another
-- (1e-400 as 0, 0.1000000000000000000001 as 0.1) is refused here too: a
-- filter would match other jobs than the one stored. extra_float_digits 1: a
-- double's text is its shortest exact one (0.30000000000000004 holds).
create function jobs.json_doubles_exact(p_value jsonb)
returns boolean language plpgsql immutable set extra_float_digits = 1 as $$
begin
  return not exists (select from jsonb_path_query(p_value, 'strict $.**') n, cast(n #>> '{}' as numeric) x
                     where jsonb_typeof(n) = 'number'
                       and case when scale(x) = 0 then abs(x) > 9007199254740991 else x <> x::text::float8::text::numeric end);
exception when numeric_value_out_of_range then
  return false;  -- over a double's range, or under its least
end $$;

-- A body POST /drain (src/http/requests.ts, parseDrainRequest) takes, by its
-- rules: one it refuses would be refused (400) at every tick, the drain never
-- run, and no one told. PDC03 naming body.<field> (body.exclude[1]). Its
-- fields only: a key it does not define is refused too, as POST /drain
-- refuses it (a misspelt batch_size would be a 400 at each tick); a URL that
-- is not pgdrain's takes its own parameters in its query string. Bounds that
-- are the server's own (--max-batch, --max-budget) are not known here: the
-- most any server takes (batchSize 10000; budgetSeconds under timeout_ms).
-- test/http-drain-body-rules.test.ts feeds the same bodies to both.
create function jobs.check_http_drain_body(p_body jsonb, p_timeout_ms integer)
returns void language plpgsql immutable as $$
declare
  v jsonb;
  v_field text;
  v_n numeric;
  v_i integer := 0;
  got text;
begin
  if p_body is null or jsonb_typeof(p_body) <> 'object' then
    perform jobs.raise_invalid('PDC03', 'body', 'must be a JSON object');
  end if;
  for v_field, v in select key, value from jsonb_each(p_body) loop
    got := format(', got %s', left(v::text, 80));
    v_n := case when jsonb_typeof(v) = 'number' then v::numeric end;
    if not jobs.json_doubles_exact(v) then
      perform jobs.raise_invalid('PDC03', 'body.' || left(v_field, 80), 'must hold only numbers POST /drain keeps as written: '
        || 'integers up to 2^53, others a 64-bit float holds (send a bigger or more precise one as a string)' || got);
    end if;
    if v_field = 'batchSize' then
      if v_n is null or v_n <> trunc(v_n) or v_n < 1 or v_n > 10000 then
        perform jobs.raise_invalid('PDC03', 'body.batchSize',
          'must be an integer from 1 to 10000, at most the server''s maximum (serve --max-batch, default 1000)' || got);
      end if;
    elsif v_field = 'budgetSeconds' then
      if v_n is null or v_n <= 0 then
        perform jobs.raise_invalid('PDC03', 'body.budgetSeconds', 'must be a number of seconds greater than 0' || got);
      elsif v_n * 1000 >= p_timeout_ms then
        perform jobs.raise_invalid('PDC03', 'body.budgetSeconds', format(
          'must be under timeout_ms (%s): pg_net hanging up at timeout_ms stops the drain%s', p_timeout_ms, got));
      end if;
    elsif v_field = 'topic' then
      if jsonb_typeof(v) <> 'string' or jobs.blank(v #>> '{}') or length(v #>> '{}') > 200 then
        perform jobs.raise_invalid('PDC03', 'body.topic',
          'must be a non-empty pattern of at most 200 characters, not only whitespace' || got);
      end if;
    elsif v_field = 'queue' then
      if jsonb_typeof(v) <> 'string' then
        perform jobs.raise_invalid('PDC03', 'body.queue', 'must be a string' || got);
      end if;
      perform jobs.check_name(v #>> '{}', 'PDC03', 'body.queue', 'queue name');
    elsif v_field = 'lingerMs' then
      if v_n is null or v_n < 0 or v_n > 86400000 then
        perform jobs.raise_invalid('PDC03', 'body.lingerMs', 'must be a number of milliseconds from 0 to 86400000 (a day)' || got);
      end if;
    elsif v_field = 'pollMs' then
      if v_n is null or v_n < 50 or v_n > 3600000 then
        perform jobs.raise_invalid('PDC03', 'body.pollMs', 'must be a number of milliseconds from 50 to 3600000 (an hour)' || got);
      end if;
    elsif v_field = 'filter' then
      if jsonb_typeof(v) <> 'object' then
        perform jobs.raise_invalid('PDC03', 'body.filter', 'must be a JSON object' || got);
      end if;
    elsif v_field = 'exclude' then
      if jsonb_typeof(v) <> 'array' or jsonb_array_length(v) > 100 then
        perform jobs.raise_invalid('PDC03', 'body.exclude', 'must be an array of at most 100 JSON objects' || got);
      end if;
      for v in select value from jsonb_array_elements(v) loop
        if jsonb_typeof(v) <> 'object' or v = '{}' then
          perform jobs.raise_invalid('PDC03', format('body.exclude[%s]', v_i), 'must be a JSON object, not empty '
            || '({} is in every job''s attributes, so it would exclude them all)' || format(', got %s', left(v::text, 80)));
        end if;
        v_i := v_i + 1;
      end loop;
    else
      perform jobs.raise_invalid('PDC03', 'body.' || left(v_field, 80), 'unknown field: POST /drain takes batchSize, '
        || 'budgetSeconds, topic, queue, lingerMs, pollMs, filter and exclude (another endpoint''s parameters go in the URL''s query string)');
    end if;
  end loop;
end $$;

-- Registers pg_cron job pgdrain:http:<name> that posts `body` to `url` (the
-- HTTP drain endpoint, POST /drain) with "Authorization: Bearer <token>" at
-- each tick. Needs pg_net (as on Supabase) and pg_cron; raises 0A000 naming
-- the one that is missing. Idempotent per name. Returns the pg_cron job id.
-- pg_net hanging up at timeout_ms stops the drain (as any caller's
-- disconnect): its default, 120 s, is over serve's default budget (90 s), and a
-- body's budgetSeconds must be under it. A body without one gets the
-- server's default (a budget added here could pass a server's maximum: 400).
-- The body is checked by POST /drain's rules (jobs.check_http_drain_body).
create function jobs.schedule_http_drain(
  url        text,
  token      text,
  cron       text    default '* * * * *',
  name       text    default 'default',
  body       jsonb   default '{}',
  timeout_ms integer default 120000
) returns bigint language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  if to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is null then
    perform jobs.require_extension('pg_net', 'jobs.schedule_http_drain',
      'CREATE EXTENSION pg_net; or have a platform cron, a Kubernetes CronJob or a Cloudflare cron trigger call the endpoint');
  end if;
  if schedule_http_drain.url is null or schedule_http_drain.url !~ '^https?://[^\s]+$' then
    perform jobs.raise_invalid('PDC03', 'url', format('must be an http:// or https:// URL, got %s',
      coalesce(left(quote_literal(schedule_http_drain.url), 80), 'null')));
  end if;
  -- 50: pg_cron's job names hold 63 bytes, 13 of them 'pgdrain:http:'.
  if schedule_http_drain.name is null or schedule_http_drain.name !~ '^[A-Za-z0-9_.:-]{1,50}$' then
    perform jobs.raise_invalid('PDC02', 'name', 'must be 1 to 50 letters, digits, _ . : or -');
  end if;
  if schedule_http_drain.timeout_ms is null or schedule_http_drain.timeout_ms < 1 or schedule_http_drain.timeout_ms > 900000 then
    perform jobs.raise_invalid('PDC03', 'timeout_ms', 'must be between 1 and 900000');
  end if;
  perform jobs.check_http_drain_body(schedule_http_drain.body, schedule_http_drain.timeout_ms);
  perform jobs.cron_next(schedule_http_drain.cron);
  if not jobs.has_pg_cron() then
    perform jobs.require_extension('pg_cron', 'jobs.schedule_http_drain',
      'CREATE EXTENSION pg_cron in the database named by cron.database_name');
  end if;
  insert into jobs.http_drain as h (name, url, token, body, timeout_ms)
  values (schedule_http_drain.name, schedule_http_drain.url, schedule_http_drain.token,
          schedule_http_drain.body, schedule_http_drain.timeout_ms)
  on conflict on constraint http_drain_pkey do update
  set url = excluded.url, token = excluded.token, body = excluded.body, timeout_ms = excluded.timeout_ms;
  return jobs.pg_cron_schedule('pgdrain:http:' || schedule_http_drain.name, schedule_http_drain.cron,
                               format('set transaction isolation level read committed; select jobs.run_http_drain(%L)',
                                      schedule_http_drain.name));
end $$;

-- Removes an HTTP drain and its pg_cron job. Returns false if there was none.
create function jobs.unschedule_http_drain(name text default 'default')
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_found boolean;
begin
  delete from jobs.http_drain h where h.name = unschedule_http_drain.name;
  v_found := found;
  return jobs.pg_cron_unschedule('pgdrain:http:' || unschedule_http_drain.name) or v_found;
end $$;
