-- pgdrain 0043: checks of a job's options (timeout, priority, max_retries, its
-- retry policy and expiry) and of a claim's size and selection (n, pattern,
-- max_timeout): each raises an error of class PD naming the field, through
-- jobs.raise_invalid (sql/0002, with the checks of texts: names, keys, groups).

-- p_timeout_name: the timeout's field as its caller names it (jobs.publish's
-- is timeout_seconds).
create function jobs.check_options(p_timeout numeric, p_priority integer, p_max_retries integer,
                                   p_prefix text default '', p_timeout_name text default 'timeout')
returns void language plpgsql immutable as $$
begin
  -- At least a millisecond: a shorter one ends before any claim could start it.
  if p_timeout is not null and (p_timeout < 0.001 or p_timeout > 86400) then
    perform jobs.raise_invalid('PD002', p_prefix || p_timeout_name,
      format('must be 0.001 to 86400 seconds, got %s', p_timeout));
  end if;
  if p_priority is not null and (p_priority < -1000000 or p_priority > 1000000) then
    perform jobs.raise_invalid('PD004', p_prefix || 'priority',
      format('must be between -1000000 and 1000000, got %s', p_priority));
  end if;
  if p_max_retries is not null and (p_max_retries < 0 or p_max_retries > 1000) then
    perform jobs.raise_invalid('PD003', p_prefix || 'max_retries',
      format('must be between 0 and 1000, got %s', p_max_retries));
  end if;
end $$;

-- A retry policy (a queue's, jobs.create_queue; a job's, jobs.publish), each
-- checked with PD007 naming the field (p_prefix: 'jobs[3].' in a bulk).
-- p_pair: also the cap against the base (null: 5 s), when the cap is given;
-- create_queue checks that itself, against the values the queue keeps.
create function jobs.check_retry_policy(p_delay numeric, p_backoff text, p_delay_max numeric,
                                        p_prefix text default '', p_pair boolean default true)
returns void language plpgsql immutable as $$
begin
  -- NaN is greater than every number: the upper bounds turn it away.
  if p_delay is not null and (p_delay < 0 or p_delay > 86400) then
    perform jobs.raise_invalid('PD007', p_prefix || 'retry_delay',
      format('must be 0 to 86400 seconds, or null for the default 5, got %s', p_delay));
  end if;
  if p_backoff is not null and p_backoff not in ('exponential', 'fixed') then
    perform jobs.raise_invalid('PD007', p_prefix || 'retry_backoff',
      format('must be ''exponential'' or ''fixed'', or null for exponential, got %s', left(quote_literal(p_backoff), 80)));
  end if;
  if p_delay_max is not null and (p_delay_max < 1 or p_delay_max > 604800) then
    perform jobs.raise_invalid('PD007', p_prefix || 'retry_delay_max',
      format('must be 1 to 604800 seconds (7 days), or null for an hour, got %s', p_delay_max));
  end if;
  if p_pair and p_delay_max < coalesce(p_delay, 5) then
    perform jobs.raise_invalid('PD007', p_prefix || 'retry_delay_max',
      format('must be at least the retry delay (%s seconds), got %s', coalesce(p_delay, 5), p_delay_max));
  end if;
end $$;

-- An expiry (jobs.publish's expires_at; p_field: 'jobs[3].expires_at' in a
-- bulk): a finite time after the job's scheduled one, when it would be due.
create function jobs.check_expiry(p_expires_at timestamptz, p_scheduled_at timestamptz, p_field text)
returns void language plpgsql stable as $$
begin
  if not isfinite(p_expires_at) then
    perform jobs.raise_invalid('PD007', p_field, format('must be a finite time, got %s', p_expires_at));
  elsif p_expires_at <= p_scheduled_at then
    perform jobs.raise_invalid('PD007', p_field, format(
      'must be after the job''s scheduled time (%s), got %s: it would expire before it could run', p_scheduled_at, p_expires_at));
  end if;
end $$;

-- A job's expiry: its own, else its queue's expire_in after its scheduled time, else none.
create function jobs.expiry(p_expires_at timestamptz, p_scheduled_at timestamptz, p_expire_in numeric)
returns timestamptz language sql stable as $$
  select coalesce(p_expires_at, p_scheduled_at + make_interval(secs => p_expire_in::float8))
$$;

create function jobs.check_batch(p_n integer)
returns void language plpgsql immutable as $$
begin
  if p_n is null or p_n < 1 or p_n > 10000 then
    perform jobs.raise_invalid('PD005', 'n', format('must be between 1 and 10000, got %s', coalesce(p_n::text, 'null')));
  end if;
end $$;

-- A claim's n, pattern and max_timeout (jobs.pick's, which each claim calls
-- once): a pattern of 1 to 200 characters, not only whitespace (PD006);
-- max_timeout 0 or more seconds (PD005: below 0 no job fits, and NaN,
-- above every number, would fit every one), either null for any.
create function jobs.check_pick(p_n integer, p_pattern text, p_max_timeout numeric)
returns void language plpgsql immutable as $$
begin
  perform jobs.check_batch(p_n);
  if jobs.blank(p_pattern) or length(p_pattern) > 200 then
    perform jobs.raise_invalid('PD006', 'pattern', 'must be a non-empty LIKE pattern of at most 200 characters');
  end if;
  if p_max_timeout < 0 or p_max_timeout = 'NaN' then
    perform jobs.raise_invalid('PD005', 'max_timeout',
      format('must be 0 or more seconds, or null for any, got %s', p_max_timeout));
  end if;
end $$;
