// PGCONNECT_TIMEOUT is added to a database URL without a connect_timeout of its
// own. It was set on a parsed URL and its href taken: that percent-encodes the
// user name and password again (: as %3A, ; as %3B, @ as %40), and pg, which
// re-encodes a URL holding a raw % that starts no escape, then read %3B as the
// text "%3B": a password "50%off;=x" reached the server as "50%off%3B%3Dx"
// (docs/cli.md says @ : % and spaces work as given). What pg reads of the URL
// (its own parser) must not change.
import { parse } from 'pg-connection-string';
import { afterEach, expect, it } from 'vitest';
import { withConnectTimeout } from '../src/cli/connect.js';

afterEach(() => {
  delete process.env.PGCONNECT_TIMEOUT;
});

it.each([
  'postgres://app:a:b c@db.example/app',
  'postgres://app:50%off;=x@db.example:5433/app',
  'postgres://us:er:a@b:c%d e@db.example/app?application_name=x',
  'postgres://app:p w@db.example/app?',
  'postgres://app:p:w@[::1]:5432/app?sslmode=disable&',
  'postgres://app:pw@db.example/app',
])('%s: pg reads the same user, password, host and database, and the timeout', (url) => {
  process.env.PGCONNECT_TIMEOUT = '7';
  const before = parse(url);
  const after = parse(withConnectTimeout(url));
  expect(after).toEqual({ ...before, connect_timeout: '7' });
});

it('a URL with its own connect_timeout is left as it is', () => {
  process.env.PGCONNECT_TIMEOUT = '7';
  const url = 'postgres://app:a:b c@db.example/app?connect_timeout=3';
  expect(withConnectTimeout(url)).toBe(url);
});
