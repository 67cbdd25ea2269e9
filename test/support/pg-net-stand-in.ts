// A stand-in for pg_net, which cannot be installed on this machine (no Debian
// 12 package for PostgreSQL 15): pg_net's net.http_post signature, recording
// each request in net.requests instead of sending it.
export const PG_NET_STAND_IN = `create schema net;
  create table net.requests (id bigserial, url text, body jsonb, headers jsonb, timeout_milliseconds integer);
  create function net.http_post(url text, body jsonb default '{}', params jsonb default '{}',
                                headers jsonb default '{}', timeout_milliseconds integer default 5000)
  returns bigint language sql as $$
    insert into net.requests (url, body, headers, timeout_milliseconds) values (url, body, headers, timeout_milliseconds) returning id
  $$;`;
