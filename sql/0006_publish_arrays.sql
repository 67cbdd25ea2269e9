-- pgdrain 0006: publishing many jobs at once: column arrays and a bulk of
-- jobs.

-- Any number of jobs in one statement, as one array per field (what
-- publishBulk sends: no composite built per job); every array but tasks may
-- be null (all take the default) or hold nulls. bodies is a JSON array, one
-- element per job. delays are seconds from the call (jobs.call_time: inside
-- a transaction open for a while, not from its start, which would make the
-- job due early, or already due at commit), for jobs whose scheduled_at is
-- null; a job with neither, or with a delay of 0, is due at the transaction's
-- time (`now`), and its expires_at checked against that: counted from the
-- call, a delay of 0 refused an expiry of now() + 1 ms (PD007) once the
-- transaction had been open that long. The whole batch is checked before anything is written, and an
-- error names the first bad job: jobs[3].task. All go to one queue (default
-- 'default'), whose defaults fill null timeouts, priorities and max_retries.
-- dedupe_keys, serial_keys and attributes (a JSON array of objects or nulls)
-- are per job as in jobs.publish, dedupe mode 'keep' (dedupe_modes null, or
-- a null in it) or 'keep_waiting' (dedupe_modes): a job whose key an active
-- job holds (keep_waiting: one not started yet), or an earlier job of the
-- same call, is not written and answers that job's id (a holder past its expiry, or running and asked
-- to cancel, lets go of its key first, as in jobs.publish: jobs.publish_keyed;
-- keep_waiting: and one running or waiting to retry, its row waited for
-- when a settle holds it, as jobs.publish waits; one not started yet held
-- until commit, or waited for when a claim holds it; a publish taking the key
-- is waited for, at most 500 distinct keep_waiting keys, PD011
-- dedupe_modes). (A replace rewrites a waiting job under its
-- key's lock, and depends_on locks and checks each dependency: jobs.publish,
-- one job at a time.) retry_delays, retry_backoffs and retry_delay_maxes are
-- each job's own retry policy, as jobs.publish's retry_* (a null in all
-- three: the queue's). expires_at: each job's, as jobs.publish's (a null:
-- its queue's expire_in, else never; for a job without scheduled_at, after
-- the call's time plus its delay, jobs.call_time). dead_letters: each job's own
-- dead-letter queue, as jobs.publish's (a null: its queue's), each distinct
-- one checked once (PD009 jobs[i].dead_letter, i its first job).
-- group_ids, group_tiers: each job's group and tier, as jobs.publish's
-- (PD019 jobs[i].group_id). Returns one id per task, in order.
create function jobs.publish_arrays(
  tasks        text[],
  bodies       jsonb              default null,
  scheduled_at timestamptz[]      default null,
  delays       double precision[] default null,
  timeouts     numeric[]          default null,
  priorities   integer[]          default null,
  max_retries  integer[]          default null,
  queue        text               default null,
  now          timestamptz        default null,
  dedupe_keys  text[]             default null,
  serial_keys  text[]             default null,
  attributes   jsonb              default null,
  retry_delays numeric[]          default null,
  retry_backoffs text[]           default null,
  retry_delay_maxes numeric[]     default null,
  expires_at   timestamptz[]      default null,
  dead_letters text[]             default null,
  group_ids    text[]             default null,
  group_tiers  text[]             default null,
  dedupe_modes text[]             default null
) returns bigint[] language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := jobs.clock(publish_arrays.now);
  v_from timestamptz := jobs.call_time(publish_arrays.now, v_now);  -- what a delay and an expiry count from
  v_queue text := coalesce(publish_arrays.queue, 'default');
  v_n integer := coalesce(cardinality(publish_arrays.tasks), 0);
  v_bad record;
  v_which text;
  v_ids bigint[];
  v_q jobs.queue;
  v_timeout numeric;
  v_priority integer;
  v_max_retries integer;
begin
  if coalesce(jsonb_typeof(publish_arrays.bodies), 'array') <> 'array'
     or coalesce(jsonb_array_length(publish_arrays.bodies), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.scheduled_at), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.delays), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.timeouts), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.priorities), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.max_retries), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.dedupe_keys), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.serial_keys), v_n) <> v_n
     or coalesce(jsonb_typeof(publish_arrays.attributes), 'array') <> 'array'
     or coalesce(jsonb_array_length(publish_arrays.attributes), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.retry_delays), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.retry_backoffs), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.retry_delay_maxes), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.expires_at), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.dead_letters), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.group_ids), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.group_tiers), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.dedupe_modes), v_n) <> v_n then
    -- Which one, for the message: read only on this path.
    select x.arg into v_which from (values
      (1, 'bodies', case when coalesce(jsonb_typeof(publish_arrays.bodies), 'array') = 'array'
                         then coalesce(jsonb_array_length(publish_arrays.bodies), v_n) end),
      (2, 'scheduled_at', cardinality(publish_arrays.scheduled_at)), (3, 'delays', cardinality(publish_arrays.delays)),
      (4, 'timeouts', cardinality(publish_arrays.timeouts)), (5, 'priorities', cardinality(publish_arrays.priorities)),
      (6, 'max_retries', cardinality(publish_arrays.max_retries)), (7, 'dedupe_keys', cardinality(publish_arrays.dedupe_keys)),
      (8, 'serial_keys', cardinality(publish_arrays.serial_keys)),
      (9, 'attributes', case when coalesce(jsonb_typeof(publish_arrays.attributes), 'array') = 'array'
                             then coalesce(jsonb_array_length(publish_arrays.attributes), v_n) end),
      (10, 'retry_delays', cardinality(publish_arrays.retry_delays)),
      (11, 'retry_backoffs', cardinality(publish_arrays.retry_backoffs)),
      (12, 'retry_delay_maxes', cardinality(publish_arrays.retry_delay_maxes)),
      (13, 'expires_at', cardinality(publish_arrays.expires_at)), (14, 'dead_letters', cardinality(publish_arrays.dead_letters)),
      (15, 'group_ids', cardinality(publish_arrays.group_ids)), (16, 'group_tiers', cardinality(publish_arrays.group_tiers)),
      (17, 'dedupe_modes', cardinality(publish_arrays.dedupe_modes))) x(ord, arg, n)
    where coalesce(x.n, -1) <> v_n and (x.n is not null or x.arg in ('bodies', 'attributes'))
    order by x.ord limit 1;
    perform jobs.raise_invalid('PD017', 'jobs', format(
      'every array must hold one element per task (bodies, attributes: JSON arrays): %s does not (%s tasks)', v_which, v_n));
  end if;
  -- Each distinct task name once (a batch repeats a few names), the option
  -- arrays only when sent; the per-job pass only to name the first bad job.
  -- SQL tasks (sql:) must be allowed (sql/0025): asked of those names only.
  if array_position(publish_arrays.tasks, null) is not null
     or exists (select from (select distinct t from unnest(array_remove(publish_arrays.tasks, publish_arrays.tasks[1])
                                                         || publish_arrays.tasks[1]) t) d
                where length(d.t) > 200 or d.t !~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$'
                   or d.t like 'sql:%' and not exists (select from jobs.sql_task s where s.name = lower(substr(d.t, 5))))
     or exists (select from unnest(publish_arrays.timeouts) x where x < 0.001 or x > 86400)
     or exists (select from unnest(publish_arrays.priorities) x where x < -1000000 or x > 1000000)
     or exists (select from unnest(publish_arrays.max_retries) x where x < 0 or x > 1000)
     -- NaN sorts above every number, so it fails the upper bound.
     or exists (select from unnest(publish_arrays.delays) x where x < 0 or x > 315360000)
     or exists (select from unnest(publish_arrays.scheduled_at) x where not isfinite(x))
     or exists (select from unnest(publish_arrays.dedupe_keys) x where jobs.blank(x) or length(x) > 500)
     or exists (select from unnest(publish_arrays.serial_keys) x where jobs.blank(x) or length(x) > 500)
     or exists (select from jsonb_array_elements(publish_arrays.attributes) x where jsonb_typeof(x) not in ('object', 'null'))
     or exists (select from unnest(publish_arrays.retry_delays) x where x < 0 or x > 86400)
     or exists (select from unnest(publish_arrays.retry_backoffs) x where x not in ('exponential', 'fixed'))
     or exists (select from unnest(publish_arrays.retry_delays, publish_arrays.retry_delay_maxes) x(d, m)
                where x.m < 1 or x.m > 604800 or x.m < coalesce(x.d, 5))
     or exists (select from unnest(publish_arrays.expires_at, publish_arrays.scheduled_at, publish_arrays.delays) x(e, s, d)
                where not isfinite(x.e) or x.e <= coalesce(x.s, v_from + make_interval(secs => nullif(x.d, 0)), v_now)) then
    select j.ord, j.task, j.timeout, j.priority, j.max_retries, j.delay, j.scheduled_at, j.dedupe_key, j.serial_key,
           nullif(j.attributes, 'null') as attributes, j.retry_delay, j.retry_backoff, j.retry_delay_max, j.expires_at into v_bad
    from rows from (unnest(publish_arrays.tasks), unnest(publish_arrays.timeouts), unnest(publish_arrays.priorities),
                    unnest(publish_arrays.max_retries), unnest(publish_arrays.delays), unnest(publish_arrays.scheduled_at),
                    unnest(publish_arrays.dedupe_keys), unnest(publish_arrays.serial_keys),
                    jsonb_array_elements(publish_arrays.attributes), unnest(publish_arrays.retry_delays),
                    unnest(publish_arrays.retry_backoffs), unnest(publish_arrays.retry_delay_maxes),
                    unnest(publish_arrays.expires_at))
           with ordinality as j(task, timeout, priority, max_retries, delay, scheduled_at, dedupe_key, serial_key, attributes,
                                retry_delay, retry_backoff, retry_delay_max, expires_at, ord)
    where j.task is null or j.task !~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$' or length(j.task) > 200
       or j.task like 'sql:%' and not exists (select from jobs.sql_task s where s.name = lower(substr(j.task, 5)))
       or j.timeout < 0.001 or j.timeout > 86400
       or j.priority < -1000000 or j.priority > 1000000
       or j.max_retries < 0 or j.max_retries > 1000
       or j.delay < 0 or j.delay > 315360000
       or not isfinite(j.scheduled_at)
       or jobs.blank(j.dedupe_key) or length(j.dedupe_key) > 500 or jobs.blank(j.serial_key) or length(j.serial_key) > 500
       or jsonb_typeof(j.attributes) not in ('object', 'null')
       or j.retry_delay < 0 or j.retry_delay > 86400 or j.retry_backoff not in ('exponential', 'fixed')
       or j.retry_delay_max < 1 or j.retry_delay_max > 604800 or j.retry_delay_max < coalesce(j.retry_delay, 5)
       or not isfinite(j.expires_at)
       or j.expires_at <= coalesce(j.scheduled_at, v_from + make_interval(secs => nullif(j.delay, 0)), v_now)
    order by j.ord limit 1;
    if found then
      perform jobs.check_task(v_bad.task, format('jobs[%s].task', v_bad.ord));
      if v_bad.task like 'sql:%' then
        perform jobs.check_sql_task(v_bad.task, format('jobs[%s].task', v_bad.ord));
      end if;
      perform jobs.check_options(v_bad.timeout, v_bad.priority, v_bad.max_retries, format('jobs[%s].', v_bad.ord));
      if not isfinite(v_bad.scheduled_at) then
        perform jobs.raise_invalid('PD007', format('jobs[%s].scheduled_at', v_bad.ord),
          format('must be a finite time, got %s', v_bad.scheduled_at));
      end if;
      perform jobs.check_key(v_bad.dedupe_key, 'PD011', format('jobs[%s].dedupe_key', v_bad.ord));
      perform jobs.check_key(v_bad.serial_key, 'PD012', format('jobs[%s].serial_key', v_bad.ord));
      perform jobs.check_object(v_bad.attributes, format('jobs[%s].attributes', v_bad.ord));
      perform jobs.check_retry_policy(v_bad.retry_delay, v_bad.retry_backoff, v_bad.retry_delay_max,
                                      format('jobs[%s].', v_bad.ord));
      if v_bad.delay is null or v_bad.delay between 0 and 315360000 then
        perform jobs.check_expiry(v_bad.expires_at,
                                  coalesce(v_bad.scheduled_at, v_from + make_interval(secs => nullif(v_bad.delay, 0)), v_now),
                                  format('jobs[%s].expires_at', v_bad.ord));
      end if;
      perform jobs.raise_invalid('PD007', format('jobs[%s].delay', v_bad.ord),
        format('must be 0 to 315360000 seconds (ten years), got %s', v_bad.delay));
    end if;
  end if;
  -- Groups: the first bad job named.
  if exists (select from unnest(publish_arrays.group_ids) x where jobs.blank(x) or length(x) > 200)
     or exists (select from unnest(publish_arrays.group_tiers, publish_arrays.group_ids) x(t, g)
                where jobs.blank(x.t) or length(x.t) > 200 or x.t is not null and x.g is null) then
    select x.ord, x.g, x.t into v_bad
    from unnest(publish_arrays.group_ids, publish_arrays.group_tiers) with ordinality as x(g, t, ord)
    where jobs.blank(x.g) or length(x.g) > 200 or jobs.blank(x.t) or length(x.t) > 200 or x.t is not null and x.g is null
    order by x.ord limit 1;
    perform jobs.check_group(v_bad.g, v_bad.t, format('jobs[%s].', v_bad.ord));
  end if;
  -- Dedupe modes: the first bad job named (a replace rewrites a waiting job
  -- under its key's lock, and depends_on locks and checks each dependency:
  -- jobs.publish, one job at a time).
  if publish_arrays.dedupe_modes is not null then
    select x.ord, x.mode into v_bad
    from unnest(publish_arrays.dedupe_modes, publish_arrays.dedupe_keys) with ordinality as x(mode, key, ord)
    where x.mode not in ('keep', 'keep_waiting') or x.mode is not null and x.key is null
    order by x.ord limit 1;
    if found and v_bad.mode not in ('keep', 'keep_waiting') then
      perform jobs.raise_invalid('PD011', format('jobs[%s].dedupe_mode', v_bad.ord), format(
        'must be keep or keep_waiting in a bulk publish (a replace rewrites a waiting job under its key''s lock, '
        || 'one job at a time: jobs.publish), got %s', left(quote_literal(v_bad.mode), 80)));
    elsif found then
      perform jobs.raise_invalid('PD011', format('jobs[%s].dedupe_mode', v_bad.ord), 'needs a dedupe_key (the key whose job it keeps)');
    end if;
  end if;
  -- Each distinct serial key holds a lock-table entry until commit (jobs.lock_serial_keys).
  if (select count(distinct k) from unnest(publish_arrays.serial_keys) k) > 500 then
    perform jobs.raise_invalid('PD012', 'serial_keys', 'must hold at most 500 distinct keys in one bulk publish '
      || '(each takes a lock until the publish commits, from a table PostgreSQL sizes by max_locks_per_transaction): '
      || 'publish more in several');
  end if;
  -- Each distinct key given with keep_waiting too (jobs.publish_keyed).
  if publish_arrays.dedupe_modes is not null and (select count(distinct x.key)
      from unnest(publish_arrays.dedupe_keys, publish_arrays.dedupe_modes) x(key, mode) where x.mode = 'keep_waiting') > 500 then
    perform jobs.raise_invalid('PD011', 'dedupe_modes', 'must give keep_waiting to at most 500 distinct dedupe keys in one bulk '
      || 'publish (each takes a lock until the publish commits, from a table PostgreSQL sizes by max_locks_per_transaction): '
      || 'publish more in several');
  end if;
  -- Each distinct dead letter once, in the order of its first job: that job is named.
  for v_bad in select min(x.ord) as ord, x.d from unnest(publish_arrays.dead_letters) with ordinality as x(d, ord)
               where x.d is not null group by x.d order by 1 loop
    perform jobs.check_dead_letter(v_bad.d, v_queue, format('jobs[%s].dead_letter', v_bad.ord));
  end loop;
  -- Decided once per call: plain jobs never take the keyed path's per-job
  -- steps, nor its retry policy arrays.
  if publish_arrays.dedupe_keys is not null or publish_arrays.serial_keys is not null
     or publish_arrays.attributes is not null or publish_arrays.retry_delays is not null
     or publish_arrays.retry_backoffs is not null or publish_arrays.retry_delay_maxes is not null
     or publish_arrays.expires_at is not null or publish_arrays.dead_letters is not null
     or publish_arrays.group_ids is not null or publish_arrays.group_tiers is not null
     or publish_arrays.dedupe_modes is not null then
    return jobs.publish_keyed(publish_arrays.tasks, publish_arrays.bodies, publish_arrays.scheduled_at,
      publish_arrays.delays, publish_arrays.timeouts, publish_arrays.priorities, publish_arrays.max_retries,
      v_queue, v_now, publish_arrays.dedupe_keys, publish_arrays.serial_keys, publish_arrays.attributes,
      publish_arrays.retry_delays, publish_arrays.retry_backoffs, publish_arrays.retry_delay_maxes,
      publish_arrays.expires_at, publish_arrays.dead_letters, publish_arrays.group_ids, publish_arrays.group_tiers,
      publish_arrays.dedupe_modes, v_from);
  end if;
  v_q := jobs.admit(v_queue, v_n);
  -- Once per statement: the queue's defaults, else the global ones.
  v_timeout := coalesce(v_q.default_timeout, 60);
  v_priority := coalesce(v_q.default_priority, 0);
  v_max_retries := coalesce(v_q.default_max_retries, 3);
  perform jobs.notify('pgdrain_queued', v_queue);

  with inserted as (
    insert into jobs.job_queue (task, body, scheduled_at, timeout, priority, max_retries, created_at, queue, expires_at)
    select j.task, j.body, coalesce(j.scheduled_at, v_from + make_interval(secs => nullif(j.delay, 0)), v_now),
           coalesce(j.timeout, v_timeout), coalesce(j.priority, v_priority), coalesce(j.max_retries, v_max_retries),
           v_now, v_queue,
           -- The queue's expire_in (null for most: nothing computed per job then),
           -- from the call's time for a job without scheduled_at (jobs.call_time).
           case when v_q.expire_in is not null
                then jobs.expiry(null, coalesce(j.scheduled_at, v_from + make_interval(secs => j.delay), v_from), v_q.expire_in) end
    -- One function scan in lockstep (no join): its ordinality is already in order.
    from rows from (unnest(publish_arrays.tasks), unnest(publish_arrays.scheduled_at), unnest(publish_arrays.delays),
                    unnest(publish_arrays.timeouts), unnest(publish_arrays.priorities),
                    unnest(publish_arrays.max_retries), jsonb_array_elements(publish_arrays.bodies))
           with ordinality as j(task, scheduled_at, delay, timeout, priority, max_retries, body, ord)
    order by j.ord
    returning job_id
  )
  select array_agg(i.job_id order by i.job_id) into v_ids from inserted i;
  return coalesce(v_ids, '{}');
end $$;

-- Any number of jobs in one statement, as an array of jobs.bulk_job (null
-- fields take the defaults): jobs.publish_arrays, for SQL callers. Returns
-- the ids in order. (No keys, attributes or retry policy: a wider type would
-- break every six-field (...)::jobs.bulk_job; publish_arrays takes them.)
-- group_id, group_tier: the group (and tier) of every job of the bulk.
create function jobs.publish_bulk(jobs jobs.bulk_job[], now timestamptz default null, queue text default null,
                                  group_id text default null, group_tier text default null)
returns setof bigint language sql security definer set search_path = pg_catalog, pg_temp as $$
  select unnest(jobs.publish_arrays(
    coalesce(array_agg(j.task order by j.ord), '{}'), jsonb_agg(j.body order by j.ord),
    array_agg(j.scheduled_at order by j.ord), null, array_agg(j.timeout order by j.ord),
    array_agg(j.priority order by j.ord), array_agg(j.max_retries order by j.ord),
    publish_bulk.queue, publish_bulk.now,
    group_ids => case when publish_bulk.group_id is not null or publish_bulk.group_tier is not null
                      then array_fill(publish_bulk.group_id, array[count(*)::integer]) end,
    group_tiers => case when publish_bulk.group_tier is not null
                        then array_fill(publish_bulk.group_tier, array[count(*)::integer]) end))
  from unnest(publish_bulk.jobs) with ordinality as j(task, body, scheduled_at, timeout, priority, max_retries, ord)
$$;
