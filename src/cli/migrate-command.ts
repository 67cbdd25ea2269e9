import { Command } from 'commander';
import { ValidationError } from '../errors.js';
import { databaseUrl } from './connect.js';
import { namedAs } from './error-line.js';
import { dsnOption, type WithConnection } from './features.js';

// `pgdrain migrate`: applies the pending migrations; --print prints every
// migration's SQL (no database), --print --pending those the database has not
// applied, as migrate would apply them (a connection, to read jobs.migration).

export function migrateCommand(withConnection: WithConnection, log: (line: string) => void): Command {
  return new Command('migrate')
    .description('create or upgrade the jobs schema (idempotent, safe to run concurrently)')
    .argument('[dsn]', 'PostgreSQL URL (default: DATABASE_URL, else the embedded database)')
    .option('--print', 'print the migration SQL instead of applying it')
    .option('--pending', "with --print: only the migrations the database has not applied (connects; changes nothing)")
    .option('--roles [prefix]', 'also create NOLOGIN roles <prefix>_publisher, _worker, _admin (default prefix pgdrain)')
    .addOption(dsnOption())
    .action(async (dsnArgument: string | undefined, opts: { print?: boolean; pending?: boolean; roles?: string | boolean; dsn?: string }) => {
      // Loaded here only: the migrations' SQL is a third of the CLI, and a drain never needs it.
      const { migrate, migrationSql, ROLE_PREFIX } = await import('../migrate.js');
      if (opts.pending && !opts.print) throw new ValidationError('--pending', 'goes with --print (migrate applies the pending migrations anyway)');
      if (opts.print && !opts.pending) {
        process.stdout.write(migrationSql());
        return;
      }
      if (dsnArgument !== undefined && opts.dsn !== undefined) {
        throw new ValidationError('--dsn', 'give the URL once: as the argument or with --dsn');
      }
      // A bad URL argument named as the argument (dsn), not as --dsn, which the user did not give.
      if (dsnArgument !== undefined) namedAs('--dsn', 'dsn', () => databaseUrl(dsnArgument));
      if (opts.print) {
        if (opts.roles !== undefined) throw new ValidationError('--roles', 'is not printed: run jobs.create_roles after the script, or migrate --roles');
        const { pendingMigrationSql } = await import('../migrate-pending.js');
        await withConnection(dsnArgument ?? opts.dsn, async ({ driver }) => {
          const { pending, sql } = await pendingMigrationSql(driver);
          process.stdout.write(sql);
          log(pending.length ? `pgdrain: pending migrations ${pending.join(', ')}` : 'pgdrain: schema is up to date');
        });
        return;
      }
      // Before any connection: `--roles URL` takes the URL as the prefix.
      if (typeof opts.roles === 'string' && !ROLE_PREFIX.test(opts.roles)) {
        throw new ValidationError('--roles', 'must be a lower-case identifier of at most 41 characters' +
          (opts.roles.includes(':') ? ' (a URL? give it before --roles, or with --dsn)' : ''));
      }
      await withConnection(dsnArgument ?? opts.dsn, async ({ driver }) => {
        const applied = await migrate(driver, { roles: opts.roles });
        log(applied.length ? `pgdrain: applied migrations ${applied.join(', ')}` : 'pgdrain: schema is up to date');
      });
    });
}
