// `pgdrain serve` under clients that hold sockets: one dribbling its headers
// or its body is cut off by --headers-timeout / --request-timeout, an answer
// slower than those still arrives, and past --max-connections the socket
// longest without a request is closed, never one whose request is being
// answered. Real server process, raw TCP clients; every wait is for an event
// (a socket closed by the server), under tiny configured bounds.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { startServe } from './support/serve-process.js';

const db = await testDb();
const TOKEN = 'test-token-0123456789abcdef';
const dir = mkdtempSync(join(tmpdir(), 'pgdrain-serve-bounds-'));
// waits: runs until the file its body names exists.
writeFileSync(join(dir, 'tasks.mjs'), `
import { existsSync } from 'node:fs';
export const waits = async (body) => {
  while (!existsSync(body.release)) await new Promise((r) => setTimeout(r, 20));
  return 'released';
};
`);

const servers: ReturnType<typeof startServe>[] = [];
const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.child.kill('SIGINT');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function start(args: string[]): Promise<{ url: string; port: number; stderr: () => string }> {
  const server = startServe(db.url, args, { PGDRAIN_TOKEN: TOKEN }, dir);
  servers.push(server);
  const url = await server.url;
  return { url, port: Number(new URL(url).port), stderr: server.stderr };
}

/** A raw client: what it received, and whether the other end closed it (it never closes itself). */
interface Client {
  socket: Socket;
  received(): string;
  /** Resolves when the server has closed the socket. */
  closed: Promise<void>;
  isClosed(): boolean;
}

/** Connects and resolves once connected; `first` is written at once. */
async function client(port: number, first: string): Promise<Client> {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  let received = '';
  let isClosed = false;
  socket.setEncoding('utf8').on('data', (s: string) => (received += s));
  socket.on('error', () => {}); // a write after the server's close may meet a reset
  const closed = new Promise<void>((r) => socket.once('close', () => { isClosed = true; r(); }));
  await new Promise<void>((r, f) => socket.once('connect', r).once('error', f));
  socket.write(first);
  return { socket, received: () => received, closed, isClosed: () => isClosed };
}

/** Writes one more byte every 20 ms until the socket closes: a client that never finishes. */
function dribble(c: Client, byte: string): void {
  const timer = setInterval(() => {
    if (c.socket.writable) c.socket.write(byte);
  }, 20);
  void c.closed.then(() => clearInterval(timer));
  c.socket.once('end', () => clearInterval(timer));
}

const slowHeaders = 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ';
const publishHead = (length: number, extra = '') =>
  `POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\n`
  + `Content-Length: ${length}\r\n${extra}\r\n`;

describe('pgdrain serve: bounds on slow clients', () => {
  it('a client sending its headers byte by byte is cut off by --headers-timeout (408, closed by the server)', async () => {
    // A long request timeout: it is the headers' bound that cuts.
    const { port } = await start(['--headers-timeout', '0.3', '--request-timeout', '600']);
    const slow = await client(port, slowHeaders);
    dribble(slow, 'a');
    await slow.closed;
    expect(slow.received()).toMatch(/^HTTP\/1\.1 408 /);
  }, 30_000);

  it('a client dribbling its body is cut off by --request-timeout; a drain answering later than that still answers', async () => {
    const { url, port, stderr } = await start(['--tasks', 'tasks.mjs', '--headers-timeout', '0.5', '--request-timeout', '1']);
    const release = join(dir, 'release-1');
    const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const published = await fetch(`${url}/jobs`, { method: 'POST', headers: auth,
      body: JSON.stringify({ jobs: [{ task: 'waits', body: { release } }] }) });
    expect(published.status).toBe(201);
    const drain = fetch(`${url}/drain`, { method: 'POST', headers: auth, body: JSON.stringify({ batchSize: 1, budgetSeconds: 120 }) });
    await until(async () => (await db.sql<{ n: number }>('select count(*)::int as n from jobs.running'))[0]!.n === 1,
                'the drain to run the job');
    // Begun after the drain's request: once it is cut, the drain has run longer than --request-timeout.
    const slow = await client(port, publishHead(1_000_000));
    dribble(slow, ' ');
    await slow.closed;
    expect(slow.received()).toMatch(/^HTTP\/1\.1 408 /);
    writeFileSync(release, '');
    const answer = await drain;
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ succeeded: 1 });
    // The cut body is the client's doing: not logged (it was, as a database outage: Node's ECONNRESET).
    expect(stderr()).toBe(`pgdrain: serving on ${url}\n`);
  }, 60_000);

  it('past --max-connections the socket longest without a request is closed, never one being answered', async () => {
    // Headers may take ten minutes and idle sockets stay: only the cap closes anything here.
    const { port } = await start(['--max-connections', '3', '--headers-timeout', '600', '--keep-alive-timeout', '600']);
    const body = JSON.stringify({ jobs: [{ task: 'capped' }] });
    // A publish whose body has not come: the 100 Continue says the server has its request.
    const busy = await client(port, publishHead(Buffer.byteLength(body), 'Expect: 100-continue\r\n'));
    await until(async () => busy.received().startsWith('HTTP/1.1 100 Continue'), 'the server to take the request');
    const loris1 = await client(port, slowHeaders);
    const loris2 = await client(port, slowHeaders);
    // Three sockets open, two of them dribbling headers: a normal request still works...
    const normal = await client(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(async () => /\r\n\r\n/.test(normal.received()), 'the health check\'s answer');
    expect(normal.received()).toMatch(/^HTTP\/1\.1 200 /);
    // ...by closing the oldest of them, not the busy one nor the newer one.
    await loris1.closed;
    expect(loris1.received()).toBe('');
    expect([busy.isClosed(), loris2.isClosed()]).toEqual([false, false]);
    // The normal client keeps its socket, idle since its answer: the next newcomer closes loris2, idle longer.
    const loris3 = await client(port, slowHeaders);
    await loris2.closed;
    expect([busy.isClosed(), normal.isClosed(), loris3.isClosed()]).toEqual([false, false, false]);
    // The publish held through both: it finishes and is answered.
    busy.socket.write(body);
    await until(async () => / 201 /.test(busy.received()), 'the publish to be answered');
    expect((await db.sql<{ n: number }>("select count(*)::int as n from jobs.job_queue where task = 'capped'"))[0]!.n).toBe(1);
  }, 60_000);

  it('with every connection mid-request, a new one is refused and that is logged once', async () => {
    const { port, stderr } = await start(['--max-connections', '1', '--headers-timeout', '600']);
    const body = JSON.stringify({ jobs: [{ task: 'refused' }] });
    const busy = await client(port, publishHead(Buffer.byteLength(body), 'Expect: 100-continue\r\n'));
    await until(async () => busy.received().startsWith('HTTP/1.1 100 Continue'), 'the server to take the request');
    const refused = [await client(port, slowHeaders), await client(port, slowHeaders)];
    await Promise.all(refused.map((c) => c.closed));
    expect(refused.map((c) => c.received())).toEqual(['', '']);
    expect(stderr().match(/--max-connections/g)).toEqual(['--max-connections']);
    expect(stderr()).toContain('pgdrain: 1 connections (--max-connections), each with a request in progress: refusing new ones until one closes');
    busy.socket.write(body);
    await until(async () => / 201 /.test(busy.received()), 'the publish to be answered');
  }, 60_000);

  it('refuses bounds out of range, naming the flag, before opening the database', async () => {
    const cases: [string[], string][] = [
      [['--headers-timeout', '0'], 'must be a number of seconds from 0.1 to 3600'],
      [['--request-timeout', 'soon'], 'must be a number of seconds from 0.1 to 86400'],
      [['--keep-alive-timeout', '0'], 'must be a number of seconds from 0.1 to 3600'],
      [['--max-connections', '2.5'], 'must be an integer from 1 to 1000000'],
      [['--headers-timeout', '20', '--request-timeout', '5'],
       '--request-timeout: must be at least the headers timeout (20 s, --headers-timeout): the headers are part of the request'],
    ];
    for (const [args, message] of cases) {
      // An unreachable database: a bad flag must fail before it is asked.
      const server = startServe('postgres://nobody@127.0.0.1:1/none', args, { PGDRAIN_TOKEN: TOKEN }, dir);
      server.url.catch(() => {});
      expect(await server.exited, server.stderr()).toBe(2);
      expect(server.stderr()).toContain(message);
      expect(server.stderr()).toContain(args[args.length - 2]!);
    }
  }, 60_000);
});
