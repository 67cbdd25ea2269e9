-- pgdrain 0033: fan-out (pg-boss's subscribe / publish): a queue subscribes
-- to an event, and one jobs.publish_event of the event writes one job into
-- each subscribed queue.
--
-- Errors: PD001 event or task (the task-name rule), PD009 queue (no such
-- queue), PD018 task (an SQL task not allowed; event when the task is the
-- event's name, none given); publish_event also raises jobs.publish's
-- errors for its options (PD002 timeout, PD003 max_retries, PD004 priority,
-- PD007 also retry_delay, retry_backoff, retry_delay_max and expires_at,
-- PD014, PD019 group_id and group_tier) and what jobs.publish_arrays does (PD010 for a full queue).

-- One row per (event, queue): queue's job for the event runs task (default:
-- the event's name), so user.created can run email.welcome in queue mail and
-- crm.sync in queue crm. A queue's rows go with it.
-- The checks hold rows written by hand to the task-name rule too (a bad
-- task would otherwise refuse each publish as the bulk's jobs[1].task).
create table jobs.subscription (
  event      text        not null constraint subscription_event_name
                         check (length(event) <= 200 and event ~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$'),
  queue      text        not null references jobs.queue (name) on delete cascade,
  task       text        not null constraint subscription_task_name
                         check (length(task) <= 200 and task ~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$'),
  created_at timestamptz not null default now(),
  primary key (event, queue)
);
-- The foreign key's lookups when a queue row is deleted.
create index subscription_queue_idx on jobs.subscription (queue);
revoke all on jobs.subscription from public;

-- Raises PD001 naming event unless it follows the task-name rule.
create function jobs.check_event(p_event text)
returns void language plpgsql immutable as $$
begin
  if p_event is null or p_event = '' or length(p_event) > 200
     or p_event !~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$' then
    perform jobs.raise_invalid('PD001', 'event', format(
      'must be an event name: dot-separated words of letters, digits, _ : or - (at most 200 characters), got %s',
      coalesce(left(quote_literal(p_event), 80), 'null')));
  end if;
end $$;

-- Subscribes queue (made by jobs.create_queue) to event: each publish_event
-- of it then writes a job of task into queue. task null: the event's name
-- for a new subscription, unchanged for an existing one. Idempotent: true
-- when newly subscribed, false when it was already (its task then set to
-- the one given; with nothing to change, nothing written). An sql: task must be allowed (sql/0025), now and at each
-- publish. Admin only (jobs.create_roles).
create function jobs.subscribe(event text, queue text, task text default null)
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_new boolean;
begin
  perform jobs.check_event(subscribe.event);
  perform jobs.check_name(subscribe.queue, 'PD009', 'queue', 'queue name');
  if subscribe.task is not null then
    perform jobs.check_task(subscribe.task);
  end if;
  -- No task given: the event's name is the task of a new subscription, and
  -- the event is to blame; an existing one keeps its task, checked before.
  if coalesce(subscribe.task, subscribe.event) like 'sql:%'
     and (subscribe.task is not null or not exists (
       select from jobs.subscription s where s.event = subscribe.event and s.queue = subscribe.queue)) then
    perform jobs.check_sql_task(coalesce(subscribe.task, subscribe.event),
                                case when subscribe.task is null then 'event' else 'task' end);
  end if;
  -- Already so (its task, or no task given): nothing to write nor lock.
  perform from jobs.subscription s
  where s.event = subscribe.event and s.queue = subscribe.queue and s.task = coalesce(subscribe.task, s.task);
  if found then
    return false;
  end if;
  -- Key-share locked: the queue cannot go before this commits.
  perform from jobs.queue q where q.name = subscribe.queue for key share;
  if not found then
    perform jobs.raise_no_queue(subscribe.queue);
  end if;
  insert into jobs.subscription as s (event, queue, task)
  values (subscribe.event, subscribe.queue, coalesce(subscribe.task, subscribe.event))
  on conflict on constraint subscription_pkey do update set task = coalesce(subscribe.task, s.task)
  returning xmax = 0 into v_new;
  return v_new;
end $$;

-- Ends queue's subscription to event: true when there was one.
create function jobs.unsubscribe(event text, queue text)
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform jobs.check_event(unsubscribe.event);
  perform jobs.check_name(unsubscribe.queue, 'PD009', 'queue', 'queue name');
  delete from jobs.subscription s where s.event = unsubscribe.event and s.queue = unsubscribe.queue;
  return found;
end $$;

-- Every subscription: select * from jobs.subscriptions where event = 'user.created'.
create view jobs.subscriptions as
select s.event, s.queue, s.task, s.created_at from jobs.subscription s;

-- Publishes event: one job per subscribed queue, of the subscription's task,
-- with this body, run time (scheduled_at, or delay seconds from the call; not
-- both), priority, attributes, timeout and max_retries (null: each queue's
-- default, then the global one, as jobs.publish), retry policy (retry_delay,
-- retry_backoff, retry_delay_max: jobs.publish's; none given, each queue's)
-- and expires_at (jobs.publish's, after the run time; null: each queue's
-- expire_in after the run time, else never), group (group_id, group_tier:
-- jobs.publish's, every job in it, so each queue's group_concurrency caps
-- it; null: no group). No dedupe key: one key
-- would collapse the fan-out into one job. One call of jobs.publish_arrays
-- per queue, all in this statement: so each queue's defaults, backpressure,
-- NOTIFY and the SQL task list apply as to any bulk, and it is all or
-- nothing: a full queue (PD010 naming it) refuses the whole publish, and
-- nothing is written to any queue.
-- A paused queue takes its job, as any publish into it: the job waits for
-- jobs.resume_queue. The queues and their sql: tasks are read once, locked:
-- a queue deleted (or a task disallowed) before is left out (refused), one
-- deleted (disallowed) after waits for this publish to commit. Returns the
-- ids in queue-name order; empty when no queue subscribes (not an error).
create function jobs.publish_event(
  event        text,
  body         jsonb            default null,
  scheduled_at timestamptz      default null,
  priority     integer          default null,
  now          timestamptz      default null,
  delay        double precision default null,
  attributes   jsonb            default null,
  timeout      numeric          default null,
  max_retries  integer          default null,
  retry_delay  numeric          default null,
  retry_backoff text            default null,
  retry_delay_max numeric       default null,
  expires_at   timestamptz      default null,
  group_id     text             default null,
  group_tier   text             default null
) returns bigint[] language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := jobs.clock(publish_event.now);
  v_queues text[];
  v_tasks text[];
  v_allowed text[];
  v_ids bigint[] := '{}';
  v_sub record;
  v_policy boolean := coalesce(publish_event.retry_delay, publish_event.retry_delay_max) is not null
                      or publish_event.retry_backoff is not null;
begin
  perform jobs.check_event(publish_event.event);
  perform jobs.check_options(publish_event.timeout, publish_event.priority, publish_event.max_retries);
  perform jobs.check_object(publish_event.attributes, 'attributes');
  perform jobs.check_retry_policy(publish_event.retry_delay, publish_event.retry_backoff, publish_event.retry_delay_max);
  -- Here, as jobs.publish names them: publish_arrays would name jobs[1].group_id.
  perform jobs.check_group(publish_event.group_id, publish_event.group_tier);
  if not isfinite(publish_event.scheduled_at) then
    perform jobs.raise_invalid('PD007', 'scheduled_at', format('must be a finite time, got %s', publish_event.scheduled_at));
  end if;
  -- NaN sorts above every number, so it fails the upper bound.
  if publish_event.delay < 0 or publish_event.delay > 315360000 then
    perform jobs.raise_invalid('PD007', 'delay',
      format('must be 0 to 315360000 seconds (ten years), got %s', publish_event.delay));
  elsif publish_event.delay is not null and publish_event.scheduled_at is not null then
    perform jobs.raise_invalid('PD007', 'delay', 'give scheduled_at or delay, not both');
  end if;
  -- Checked here, as jobs.publish names it: publish_arrays would name jobs[1].expires_at.
  if publish_event.expires_at is not null then
    perform jobs.check_expiry(publish_event.expires_at,
      coalesce(publish_event.scheduled_at, jobs.call_time(publish_event.now, v_now) + make_interval(secs => nullif(publish_event.delay, 0)),
               v_now), 'expires_at');
  end if;
  -- Key-share locked, as jobs.subscribe locks its queue: a queue deleted
  -- (with its subscriptions) before this read is not published to, one
  -- deleted after waits for this publish to commit. In the order of the
  -- bounded queues' locks (jobs.admit: hashtext), not of names: two names
  -- may share a hashtext, and name order would then take them crosswise.
  select array_agg(x.queue order by x.k, x.queue), array_agg(x.task order by x.k, x.queue) into v_queues, v_tasks
  from (select s.queue, s.task, hashtext(s.queue) as k from jobs.subscription s join jobs.queue q on q.name = s.queue
        where s.event = publish_event.event for key share of q) x;
  -- The sql: tasks' rows too: allowed now, they stay so until this commits
  -- (publish_arrays checks them again), so a refusal names the subscription,
  -- never the bulk's jobs[1].task: the publisher chose no task.
  select array_agg(t.name) into v_allowed
  from (select t.name from jobs.sql_task t
        where t.name in (select lower(substr(x, 5)) from unnest(v_tasks) x where x like 'sql:%') for key share) t;
  select x.queue, x.task into v_sub from unnest(v_queues, v_tasks) x(queue, task)
  where x.task like 'sql:%' and lower(substr(x.task, 5)) <> all(coalesce(v_allowed, '{}'))
  order by x.queue limit 1;
  if found then
    perform jobs.raise_invalid('PD018', 'task', format(
      'queue %s subscribes to %s with task %s, which is not an allowed SQL task: allow it with '
      'jobs.allow_sql_task(%s), or give the subscription another task (jobs.subscribe)',
      quote_literal(v_sub.queue), quote_literal(publish_event.event), left(v_sub.task, 200),
      left(quote_literal(substr(v_sub.task, 5)), 200)));
  end if;
  for i in 1..coalesce(cardinality(v_queues), 0) loop
    v_ids := v_ids || jobs.publish_arrays(array[v_tasks[i]],
      bodies => case when publish_event.body is not null then jsonb_build_array(publish_event.body) end,
      scheduled_at => array[publish_event.scheduled_at], delays => array[publish_event.delay],
      timeouts => array[publish_event.timeout], priorities => array[publish_event.priority],
      -- The caller's now, not v_now: without one, each queue's expire_in counts
      -- from the call (jobs.call_time), not from the transaction's start.
      max_retries => array[publish_event.max_retries], queue => v_queues[i], now => publish_event.now,
      attributes => case when publish_event.attributes is not null then jsonb_build_array(publish_event.attributes) end,
      -- Arrays only when given: a plain event keeps publish_arrays' fast path.
      retry_delays => case when v_policy then array[publish_event.retry_delay] end,
      retry_backoffs => case when v_policy then array[publish_event.retry_backoff] end,
      retry_delay_maxes => case when v_policy then array[publish_event.retry_delay_max] end,
      expires_at => case when publish_event.expires_at is not null then array[publish_event.expires_at] end,
      group_ids => case when publish_event.group_id is not null then array[publish_event.group_id] end,
      group_tiers => case when publish_event.group_tier is not null then array[publish_event.group_tier] end);
  end loop;
  -- Answered in queue-name order, whatever order the locks were taken in.
  return coalesce((select array_agg(x.id order by x.queue) from unnest(v_queues, v_ids) x(queue, id)), '{}');
end $$;
