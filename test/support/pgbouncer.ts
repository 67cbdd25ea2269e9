// A real PgBouncer (the machine's binary) in front of the test cluster, on a
// free port, for tests of what a connection pooler changes: e.g. a
// CancelRequest reaches the server only while the client it names is still
// connected to PgBouncer. Trust auth, no unix socket, its files in a temp dir.
import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './postgres.js';

export interface PgBouncer {
  /** Where it listens: 127.0.0.1:port. */
  host: string;
  port: number;
  /** Its log so far (for a failing test's message). */
  log(): string;
  stop(): Promise<void>;
}

function findPgBouncer(): string {
  for (const dir of (process.env.PATH ?? '').split(':').concat('/usr/sbin', '/usr/bin')) {
    if (dir && existsSync(join(dir, 'pgbouncer'))) return join(dir, 'pgbouncer');
  }
  throw new Error('pgbouncer is not installed: the PgBouncer tests need it (apt-get install pgbouncer)');
}

/** Starts PgBouncer in `poolMode` in front of the server at `serverUrl`; every database name is passed through. */
export async function startPgBouncer(serverUrl: string, poolMode: 'session' | 'transaction'): Promise<PgBouncer> {
  const bin = findPgBouncer();
  const server = new URL(serverUrl);
  const user = decodeURIComponent(server.username) || 'postgres';
  const root = process.getuid?.() === 0;
  // PgBouncer refuses to run as root: as the cluster's own `postgres` user then.
  const ids = root
    ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) }
    : {};
  const dir = mkdtempSync(join(tmpdir(), 'pgdrain-pgbouncer-'));
  chmodSync(dir, 0o755);
  if (ids.uid !== undefined) chownSync(dir, ids.uid, ids.gid);
  const port = await freePort();
  const logfile = join(dir, 'pgbouncer.log');
  const ini = join(dir, 'pgbouncer.ini');
  writeFileSync(join(dir, 'users.txt'), `"${user}" ""\n`); // trust still wants the user listed
  writeFileSync(ini, [
    '[databases]',
    `* = host=${server.hostname} port=${server.port || 5432}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${join(dir, 'users.txt')}`,
    `pool_mode = ${poolMode}`,
    `logfile = ${logfile}`,
    'ignore_startup_parameters = extra_float_digits',
    'max_client_conn = 100',
    'default_pool_size = 10',
    '',
  ].join('\n'));
  const child = spawn(bin, [ini], { ...ids, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => { gone = true; });
  // It writes each line to both; stderr alone holds what fails before the logfile opens.
  const log = () => (existsSync(logfile) ? readFileSync(logfile, 'utf8') : stderr);
  const stop = async () => {
    if (!gone) child.kill('SIGTERM'); // immediate shutdown
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  // Ready once it accepts a TCP connection; an exit before that is a failure with its log.
  for (let i = 0; ; i++) {
    if (gone) {
      const text = log();
      await stop();
      throw new Error(`pgbouncer exited at start:\n${text}`);
    }
    if (await accepts(port)) break;
    if (i >= 200) {
      const text = log();
      await stop();
      throw new Error(`pgbouncer did not listen on 127.0.0.1:${port} within 10 s:\n${text}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { host: '127.0.0.1', port, log, stop };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}
