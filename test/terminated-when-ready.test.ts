// A connection terminated as soon as it is open (pg_terminate_backend at that
// moment, a server shutting down): the server's first ReadyForQuery and its
// FATAL 57P01 arrive in one chunk, so node-postgres emits the client's 'error'
// in the same turn as it hands the new client out. pgdrain must not crash
// with an unhandled 'error' event there. Each case runs in a child process
// (the built dist/: run `npm run build` first), as the crash would take it
// down, through a proxy that terminates every connection that way.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { CLI } from './support/drain-process.js';
import { tcpProxy } from './support/tcp-proxy.js';
import { startWsProxy } from './support/ws-proxy.js';

const db = await testDb();
const proxy = await tcpProxy('127.0.0.1', Number(new URL(db.url).port), { terminateWhenReady: true });
const wsProxy = await startWsProxy();
afterAll(async () => {
  await wsProxy.close();
  await proxy.close();
});
const terminating = new URL(db.url);
terminating.port = String(proxy.port);
const url = terminating.href;

interface Run { code: number | null; stdout: string; stderr: string }

function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, args, { env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) =>
      done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }));
  });
}

/**
 * Runs `call` (the body of an async function of `driver`) on a driver built
 * by `open` from the built package, and prints how it settled as one JSON line.
 */
function script(open: string, call: string): string[] {
  const dist = (file: string) => JSON.stringify(pathToFileURL(resolve('dist/src/db', file)).href);
  return ['--input-type=module', '-e', `
    import { pgDriver } from ${dist('pg.js')};
    import { neonDriver } from ${dist('neon.js')};
    import { WebSocket } from 'ws';
    const driver = ${open};
    let outcome;
    try {
      await (async () => { ${call} })();
      outcome = { settled: 'resolved' };
    } catch (e) {
      outcome = { settled: 'rejected', code: e.code, message: e.message };
    }
    await driver.close();
    console.log(JSON.stringify(outcome));
  `];
}

const terminated = { settled: 'rejected', code: '57P01', message: 'terminating connection due to administrator command' };
const pgOpen = `pgDriver(${JSON.stringify(url)})`;

describe('a connection terminated in the same chunk as its first ReadyForQuery', () => {
  it('the proxy does terminate it: a plain statement fails with FATAL 57P01', async () => {
    const r = await run(script(pgOpen, `await driver.query('select 1')`));
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(r.stdout)).toEqual(terminated);
  });

  it('pgDriver transaction(): fails with the FATAL instead of crashing the process', async () => {
    const r = await run(script(pgOpen, `await driver.transaction((tx) => tx.query('select 1'))`));
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(r.stdout)).toEqual(terminated);
  });

  it('pgDriver query() with a signal (ctx.publish, ctx.rateLimit): fails with the FATAL instead of crashing', async () => {
    const r = await run(script(pgOpen, `await driver.query('select 1', [], { signal: new AbortController().signal })`));
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(r.stdout)).toEqual(terminated);
  });

  it('pgDriver warm(): does not crash (the connection did open; the next statement gets a new one)', async () => {
    const r = await run(script(pgOpen, `await driver.warm()`));
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(r.stdout)).toEqual({ settled: 'resolved' });
  });

  it('neonDriver transaction(): fails with the FATAL instead of crashing the process', async () => {
    // Neon's WebSocket Pool through the test's WebSocket proxy to the terminating TCP proxy.
    const open = `neonDriver(${JSON.stringify(url)}, { wsProxy: ${JSON.stringify(wsProxy.url)}, webSocketConstructor: WebSocket })`;
    const r = await run(script(open, `await driver.transaction((tx) => tx.query('select 1'))`));
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(r.stdout)).toEqual(terminated);
  });

  it('pgdrain drain exits with one line "pgdrain: database unavailable", not an unhandled error event', async () => {
    // Its first connection is the one it opens before parsing its arguments (warm()).
    const r = await run([CLI, 'drain', '--json', '--deadline', '10'],
                        { DATABASE_URL: url, PGDRAIN_TASKS: resolve('test/fixtures/fault-tasks.mjs') });
    expect(r.stderr).not.toMatch(/Unhandled 'error' event/);
    expect(r).toMatchObject({ code: 1, stderr: 'pgdrain: database unavailable: terminating connection due to administrator command\n' });
  });
});
