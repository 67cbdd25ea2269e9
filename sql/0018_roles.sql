-- pgdrain 0018: opt-in roles (publisher, worker, admin) and their grants.

-- Roles ------------------------------------------------------------------------

-- Opt-in (pgdrain migrate --roles, or call it yourself; needs CREATEROLE):
-- creates the NOLOGIN roles <prefix>_publisher, <prefix>_worker and
-- <prefix>_admin, grants each exactly what it needs, and revokes the default
-- EXECUTE of PUBLIC on the jobs functions and procedures, which run as their
-- owner (SECURITY DEFINER, search_path pinned). Grant a role to a login role
-- or to PostgREST's authenticator. Idempotent; migrate --roles runs it again
-- after every upgrade so new functions get their grants (and lose grants
-- taken back here).
-- - publisher: publish, publish_bulk, publish_arrays and publish_event only; it cannot read or consume jobs.
-- - worker:    consume, settle, extend leases and publish follow-ups; read jobs.job (and archived) outcomes
--              and which job ids are active (waitFor), not their bodies; run
--              CALL jobs.drain_sql (SQL tasks then run with the worker's privileges).
-- - admin:     everything in the schema (cancel, redrive, queues, views, the
--              SQL task list through jobs.allow_sql_task), but jobs.http_drain:
--              the HTTP drain's token is the owner's (jobs.schedule_http_drain replaces it),
--              and writes to jobs.migration (it reads it).
-- - PUBLIC:    jobs.clock and jobs.call_time only (the call's time TS publishes read: harmless),
--              and jobs.tick_settings_error (its session's tick settings, for pgdrain stats and the dashboard).
-- Its search_path pinned: it runs as its caller (the owner, say), whose
-- path could hold a function standing in for a built-in (format).
create function jobs.create_roles(prefix text default 'pgdrain')
returns text[] language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_roles text[];
  v_role text;
begin
  if create_roles.prefix is null or create_roles.prefix !~ '^[a-z_][a-z0-9_]{0,40}$' then
    perform jobs.raise_invalid('PD016', 'prefix', 'must be a lower-case identifier of at most 41 characters');
  end if;
  v_roles := array[create_roles.prefix || '_publisher', create_roles.prefix || '_worker', create_roles.prefix || '_admin'];
  foreach v_role in array v_roles loop
    -- Roles are the cluster's: a migrate --roles in another database of it
    -- may make the same one meanwhile (its advisory lock is its database's).
    if not exists (select 1 from pg_roles where rolname = v_role) then
      begin
        execute format('create role %I nologin', v_role);
      exception when duplicate_object or unique_violation then
        null;
      when insufficient_privilege then
        raise exception 'creating role % needs CREATEROLE: grant it to %, or have a role that has it create the three roles (create role % nologin, and so on) and run this again',
          v_role, current_user, v_role using errcode = '42501';
      end;
    end if;
    execute format('grant usage on schema jobs to %I', v_role);
  end loop;
  -- Routines: functions and procedures (jobs.drain_sql).
  revoke execute on all routines in schema jobs from public;

  execute format('grant execute on function jobs.publish(text, jsonb, timestamptz, numeric, integer, integer, timestamptz, text, text, text, bigint[], jsonb, text, numeric, numeric, text, numeric, timestamptz, text, text, text), jobs.publish_bulk(jobs.bulk_job[], timestamptz, text, text, text), jobs.publish_arrays(text[], jsonb, timestamptz[], double precision[], numeric[], integer[], integer[], text, timestamptz, text[], text[], jsonb, numeric[], text[], numeric[], timestamptz[], text[], text[], text[], text[]) to %I, %I',
                 v_roles[1], v_roles[2]);
  -- The call's time (sql/0002) that every TS publish statement (publish, publishBulk,
  -- publishEvent, rescheduleJobs) reads: PUBLIC's, so a role of one's own granted only
  -- jobs.publish publishes from TS. Harmless: neither is SECURITY DEFINER nor writes, and
  -- jobs.clock given a time other than the transaction's calls jobs.check_now, which stays
  -- the admin's (a SECURITY DEFINER function taking a `now` checks it as its owner's call).
  grant execute on function jobs.clock(timestamptz), jobs.call_time(timestamptz, timestamptz) to public;
  -- What `pgdrain stats` and the dashboard ask of any role: its own tick settings (sql/0040), read only.
  grant execute on function jobs.tick_settings_error() to public;
  -- Fan-out (sql/0033): publishing an event; subscribing a queue is the admin's.
  execute format('grant execute on function jobs.publish_event(text, jsonb, timestamptz, integer, timestamptz, double precision, jsonb, numeric, integer, numeric, text, numeric, timestamptz, text, text) to %I, %I',
                 v_roles[1], v_roles[2]);
  execute format('grant execute on function jobs.claim_json(integer, text, numeric, timestamptz, text, jsonb, text, bigint[], integer[], text[], jsonb[], text[], timestamptz[], double precision[], jsonb[], bigint), jobs.claim(integer, text, numeric, timestamptz, text, jsonb, text, jsonb[]), jobs.consume(integer, timestamptz, text), jobs.consume_topic(text, integer, timestamptz, text), jobs.settle(jsonb, timestamptz), jobs.settle_arrays(bigint[], integer[], text[], jsonb[], text[], timestamptz[], double precision[], timestamptz, text), jobs.ack(bigint, jsonb, timestamptz, integer), jobs.ack(bigint[], jsonb[], timestamptz, integer[]), jobs.nack(bigint, text, timestamptz, timestamptz, integer), jobs.nack(bigint[], text[], timestamptz, timestamptz, integer[]), jobs.release(bigint[], integer[]), jobs.expire(integer, timestamptz, timestamptz), jobs.cancel_requested(bigint[]) to %I',
                 v_roles[2]);
  -- What CALL jobs.drain_sql calls besides claim and settle_arrays: the due
  -- ticks (which jobs.claim_json publishes too), two readers of what a
  -- worker may not read (sql/0025), and the raise of its argument checks.
  execute format('grant execute on procedure jobs.drain_sql(integer, numeric, text, jsonb) to %I', v_roles[2]);
  -- Handlers take rate-limit tokens (sql/0030), report progress (sql/0031)
  -- and extend their leases (sql/0035); a drain whose own loop failed gives its leases back (sql/0035).
  execute format('grant execute on function jobs.take_token(text, integer, double precision), '
                 'jobs.set_progress(bigint, integer, jsonb, text), '
                 'jobs.extend_lease(bigint, integer, numeric, timestamptz, text), '
                 'jobs.release_holder(bigint, text) to %I', v_roles[2]);
  execute format('grant execute on function jobs.publish_due_schedules(timestamptz), jobs.sql_task_call(text), jobs.sql_unfit(text, numeric), jobs.raise_invalid(text, text, text) to %I',
                 v_roles[2]);
  execute format('grant select on jobs.job, jobs.job_archive to %I', v_roles[2]);
  -- Whether a job is still active, for waitFor: its id only, not its body.
  execute format('grant select (job_id) on jobs.job_queue to %I', v_roles[2]);

  execute format('grant execute on all routines in schema jobs to %I', v_roles[3]);
  execute format('grant select, insert, update, delete on all tables in schema jobs to %I', v_roles[3]);
  -- Taken back (also from an admin an earlier version granted them): the
  -- HTTP drain's token, and writes to the SQL task list but through
  -- jobs.allow_sql_task and jobs.disallow_sql_task, which check what they add.
  execute format('revoke all on jobs.http_drain from %I', v_roles[3]);
  execute format('revoke insert, update, delete on jobs.sql_task from %I', v_roles[3]);
  -- And the owner's record of the migrations it applied: a row taken out or
  -- added would make the next migrate apply a migration again or refuse to run.
  execute format('revoke insert, update, delete on jobs.migration from %I', v_roles[3]);
  return v_roles;
end $$;
