-- pgdrain 0030: rate limits shared by every drain and every process, as
-- token buckets kept in the database (ctx.rateLimit in TypeScript).
--
-- Errors: PDC03 an argument out of range (the field named).

-- One token bucket per key: `tokens` left as of `updated_at` (fractional:
-- the refill accrues continuously). `full_at` is when the bucket is full
-- again; a row past its full_at is the same as no row (a new key starts
-- full), so deleting such rows is always safe:
--   delete from jobs.rate_limit where full_at < now();
create table jobs.rate_limit (
  key        text             primary key,
  tokens     double precision not null,
  updated_at timestamptz      not null,
  full_at    timestamptz      not null
);
revoke all on jobs.rate_limit from public;

-- Takes one token from bucket `key`, which holds up to `capacity` tokens
-- and refills at `capacity` per `per_seconds`, evenly (100 per 60 s: one
-- every 0.6 s); a key never used starts full. Returns 0 when a token was
-- taken, else the seconds until the next one (nothing taken then).
-- One statement per call: the key's row is locked while it is read and
-- written, so concurrent takers queue on that row and together never take
-- more than the bucket holds. The time is clock_timestamp() read before
-- the lock: a taker that waited for it counts the wait as not yet refilled
-- (it may grant less, never more), and updated_at never goes back.
create function jobs.take_token(key text, capacity integer, per_seconds double precision)
returns double precision language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := clock_timestamp();
  v_rate double precision; -- tokens per second
  v_wait double precision;
begin
  if take_token.key is null or jobs.blank(take_token.key) or length(take_token.key) > 200 then
    perform jobs.raise_invalid('PDC03', 'key', 'must be a non-empty text of at most 200 characters');
  end if;
  if take_token.capacity is null or take_token.capacity < 1 or take_token.capacity > 1000000 then
    perform jobs.raise_invalid('PDC03', 'capacity', format('must be an integer from 1 to 1000000, got %s',
                                                          coalesce(take_token.capacity::text, 'null')));
  end if;
  -- 'NaN' is greater than every number in SQL: the <= bound turns it away.
  if take_token.per_seconds is null or not (take_token.per_seconds >= 0.001 and take_token.per_seconds <= 315360000) then
    perform jobs.raise_invalid('PDC03', 'per_seconds', format('must be 0.001 to 315360000 seconds (ten years), got %s',
                                                             coalesce(take_token.per_seconds::text, 'null')));
  end if;
  v_rate := take_token.capacity / take_token.per_seconds;
  -- With the WHERE false (no whole token), the row is locked but not changed.
  insert into jobs.rate_limit as r (key, tokens, updated_at, full_at)
  values (take_token.key, take_token.capacity - 1, v_now, v_now + make_interval(secs => 1 / v_rate))
  on conflict on constraint rate_limit_pkey do update
    set tokens = least(take_token.capacity, r.tokens + greatest(0, extract(epoch from v_now - r.updated_at)) * v_rate) - 1,
        updated_at = greatest(r.updated_at, v_now),
        full_at = greatest(r.updated_at, v_now) + make_interval(secs =>
          (take_token.capacity - least(take_token.capacity,
                                       r.tokens + greatest(0, extract(epoch from v_now - r.updated_at)) * v_rate) + 1) / v_rate)
    where least(take_token.capacity, r.tokens + greatest(0, extract(epoch from v_now - r.updated_at)) * v_rate) >= 1;
  if found then
    return 0;
  end if;
  -- No token: the row, unchanged and locked by this call, tells how long until one.
  select (1 - least(take_token.capacity, r.tokens + greatest(0, extract(epoch from v_now - r.updated_at)) * v_rate)) / v_rate
  into v_wait
  from jobs.rate_limit r where r.key = take_token.key;
  return v_wait;
end $$;

-- Handlers take tokens as <prefix>_worker: jobs.create_roles (sql/0018)
-- grants it take_token.
