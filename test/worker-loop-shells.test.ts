// The worker-loop tests run deploy/worker-loop.sh under dash, bash and busybox
// sh (support/loop-process.ts). On a machine without one of them (busybox is
// not in a Debian base image), each of its tests fails at once naming the
// package to install, as README.md says of the tests' other needs (pg_cron,
// openssl, PgBouncer), not after its timeout with an uncaught spawn ENOENT.
import { describe, expect, it } from 'vitest';
import { loop } from './support/loop-process.js';

describe('the worker-loop tests on a machine without one of their shells', () => {
  it('fail at once, naming the shell and the package to install', () => {
    expect(() => loop('pgdrain-no-such-shell sh')).toThrow(
      /^pgdrain-no-such-shell is not installed: the worker-loop tests run deploy\/worker-loop.sh under dash, bash, busybox sh \(apt-get install pgdrain-no-such-shell; .ci\/run installs it\)$/);
  });
});
