// The Worker's queue: one per invocation, on the driver its bindings choose
// (Hyperdrive, Neon's WebSocket Pool or HTTP driver, or pg).
import { neonHttpDriverOf, neonPoolDriver } from '../src/db/neon-drivers.js';
import { loadNeon } from '../src/db/neon-load.js';
import { pgDriver } from '../src/db/pg.js';
import { hasTransactionalTask } from '../src/define-task.js';
import { createQueue, ValidationError, type Driver, type Queue, type TaskMap } from '../src/index.js';
import { asBindingError, type Env, type Settings } from './cloudflare-settings.js';

/** Connections per invocation: Workers allow 6 open at once; 2 stay free for the handlers' own (1 while a drain lingers over pg). */
const POOL_MAX = 4;

/** Opens a driver for one invocation: sockets cannot outlive the request that opened them. */
async function openDriver(env: Env, settings: Settings): Promise<Driver> {
  const kind = settings.DATABASE_DRIVER ?? (env.HYPERDRIVE ? 'hyperdrive' : 'neon');
  if (kind === 'hyperdrive') {
    if (!env.HYPERDRIVE?.connectionString) throw new ValidationError('env.HYPERDRIVE', 'no Hyperdrive binding named HYPERDRIVE');
    // Hyperdrive pools by transaction and relays no NOTIFY: a lingering drain polls, with no LISTEN session to hold.
    const { onQueued: _, ...driver } = pgDriver(env.HYPERDRIVE.connectionString, { max: POOL_MAX });
    return driver;
  }
  const url = settings.DATABASE_URL;
  if (!url) {
    // HYPERDRIVE bound and unused: DATABASE_DRIVER chose another driver.
    throw new ValidationError('env.DATABASE_URL', env.HYPERDRIVE
      ? `must be set for DATABASE_DRIVER = "${kind}" (wrangler secret put DATABASE_URL); to connect through the bound `
        + 'HYPERDRIVE instead, unset DATABASE_DRIVER or set it to "hyperdrive"'
      : 'must be set (wrangler secret put DATABASE_URL), or bind HYPERDRIVE');
  }
  if (kind === 'pg') return pgDriver(url, { max: POOL_MAX });
  // Loaded only now: a Worker on pg or Hyperdrive runs without the package.
  const wanted = `the ${kind} driver${settings.DATABASE_DRIVER ? '' : ' (the default without HYPERDRIVE)'}`;
  const neon = await loadNeon('env.DATABASE_DRIVER', wanted);
  try {
    if (kind === 'neon-http') return neonHttpDriverOf(neon, url, { fetchEndpoint: env.NEON_HTTP_ENDPOINT || undefined });
    return neonPoolDriver(neon, url, { max: POOL_MAX, wsProxy: env.NEON_WS_PROXY || undefined });
  } catch (error) {
    throw asBindingError(error);
  }
}

/**
 * A queue for one invocation. Its drains run no more jobs at once than the
 * pool holds, less one, when a task is transactional (Driver.maxConnections).
 * What DRAIN_TOPIC, DRAIN_QUEUE, DRAIN_FILTER and DRAIN_EXCLUDE choose is every
 * drain's default, the cron drain's and POST /drain's: a request's own topic,
 * queue, filter or exclude replaces its binding's, the others still apply.
 */
export async function openQueue(tasks: TaskMap, env: Env, settings: Settings): Promise<Queue> {
  // Each of its jobs would fail ("cannot hold a transaction") until its retries were spent.
  if (settings.DATABASE_DRIVER === 'neon-http' && hasTransactionalTask(tasks)) {
    throw new ValidationError('env.DATABASE_DRIVER', 'neon-http holds no transaction, and a task is transactional: '
      + 'use neon (the default), pg or hyperdrive');
  }
  const { DRAIN_TOPIC: topic, DRAIN_QUEUE: queue, selection } = settings;
  return createQueue({ driver: await openDriver(env, settings), tasks, drain: { topic, queue, ...selection } });
}
