import { Command } from 'commander';
import { PgJobEvents } from '../db/pg-events.js';
import { PgDrainError, ValidationError } from '../errors.js';
import { isJobId } from '../options.js';
import { databaseUrl, withConnectTimeout } from './connect.js';
import { openedWithin, sessionReadBound } from './db-bound.js';
import { dsnOption } from './features.js';
import { positive } from './flag-parsers.js';

// `pgdrain wait`: one job's outcome, heard on a LISTEN session of its own
// (PgJobEvents, not the commands' pool). Its session must open within
// --db-timeout (a frozen network would hold the connect, or the LISTEN,
// forever), and each connection within the URL's connect_timeout, else
// PGCONNECT_TIMEOUT, as the other commands'; then it waits for the job as
// long as --timeout says, each read of it within a --db-timeout given.

export function waitCommand(): Command {
  return new Command('wait')
    .description('wait for a job to end (LISTEN; needs a DSN) and print its outcome as JSON')
    .argument('<id>', 'job id')
    .option('--timeout <seconds>', 'give up after this long', positive)
    .addOption(dsnOption())
    .action(async (id: string, opts: { timeout?: number; dsn?: string }) => {
      // Before the session opens, as show and cancel check theirs: `wait abc` was "database unavailable" on a down server.
      if (!isJobId(id)) {
        throw new ValidationError('id', `must be a job id (a positive integer of at most 9223372036854775807), got ${JSON.stringify(id)}`);
      }
      // Checked as every command's URL (set but empty, not postgres://, a raw / ? or # in its password).
      const url = databaseUrl(opts.dsn);
      if (!url) throw new PgDrainError('invalid_argument', 'wait needs a PostgreSQL URL (--dsn or DATABASE_URL): the embedded database has no LISTEN session to share', { field: 'dsn' });
      const events = new PgJobEvents(withConnectTimeout(url), undefined, { readBound: sessionReadBound(url) });
      try {
        // Opened first, alone: subscribe resolves once LISTEN has run. waitFor takes this session.
        await openedWithin(events.subscribe(() => {}), url);
        const outcome = await events.waitFor(id, { timeoutMs: opts.timeout === undefined ? undefined : opts.timeout * 1000 });
        process.stdout.write(`${JSON.stringify(outcome)}\n`);
      } finally {
        await events.close();
      }
    });
}
