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

-- Registers pg_cron job pgdrain:http:<name> that posts `body` to `url` (the
-- HTTP drain endpoint, POST /drain) with "Authorization: Bearer <token>" at
-- each tick. Needs pg_net (as on Supabase) and pg_cron; raises 0A000 naming
-- the one that is missing. Idempotent per name. Returns the pg_cron job id.
-- pg_net hanging up at timeout_ms stops the drain (as any caller's
-- disconnect): its default, 120 s, is over serve's default budget (90 s), and a
-- body's budgetSeconds must be under it. A body without one gets the
-- server's default (a budget added here could pass a server's maximum: 400).
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
  if schedule_http_drain.body is null or jsonb_typeof(schedule_http_drain.body) <> 'object' then
    perform jobs.raise_invalid('PDC03', 'body', 'must be a JSON object');
  end if;
  if schedule_http_drain.timeout_ms is null or schedule_http_drain.timeout_ms < 1 or schedule_http_drain.timeout_ms > 900000 then
    perform jobs.raise_invalid('PDC03', 'timeout_ms', 'must be between 1 and 900000');
  end if;
  -- POST /drain refuses any other (400) at every tick: the drain would never run.
  if schedule_http_drain.body ? 'budgetSeconds' and not (jsonb_typeof(schedule_http_drain.body -> 'budgetSeconds') = 'number'
                                                         and (schedule_http_drain.body ->> 'budgetSeconds')::numeric > 0) then
    perform jobs.raise_invalid('PDC03', 'body', format(
      'budgetSeconds must be a number of seconds greater than 0 (POST /drain refuses any other at every tick), got %s',
      left((schedule_http_drain.body -> 'budgetSeconds')::text, 80)));
  end if;
  if jsonb_typeof(schedule_http_drain.body -> 'budgetSeconds') = 'number'
     and (schedule_http_drain.body ->> 'budgetSeconds')::numeric * 1000 >= schedule_http_drain.timeout_ms then
    perform jobs.raise_invalid('PDC03', 'body', format(
      'budgetSeconds %s must be under timeout_ms %s: pg_net hanging up at timeout_ms stops the drain',
      schedule_http_drain.body ->> 'budgetSeconds', schedule_http_drain.timeout_ms));
  end if;
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
                               format('select jobs.run_http_drain(%L)', schedule_http_drain.name));
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
