// The Worker, in workerd (Miniflare), when its database cannot be reached:
// nothing listens where DATABASE_URL (pg) or NEON_WS_PROXY (the Neon
// WebSocket Pool) points. workerd reports that in its own words, not
// Node's: a TCP connect() fails with "proxy request failed, cannot connect to
// the specified address", and the Neon driver's WebSocket rejects with its
// error event (an ErrorEvent, not an Error: "Network connection lost."). A
// caller must still get 503 database_unavailable (a publish with a dedupeKey
// may be sent again), as from `pgdrain serve`, not a 500 or a Worker that
// throws.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compatibilityDate, compatibilityFlags, wranglerDryRun } from './support/worker-bundle.js';
import { routed, workerStub } from './support/worker-calls.js';

const TOKEN = 'test-drain-token-0123456789';
const out = mkdtempSync(join(tmpdir(), 'pgdrain-worker-down-'));
const logs: string[] = [];
let mf: Miniflare;

/** A loopback port nothing listens on: taken, then let go. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

afterAll(async () => {
  await mf?.dispose();
  rmSync(out, { recursive: true, force: true });
});

beforeAll(async () => {
  await wranglerDryRun(['--outdir', out]); // the demo Worker of wrangler.toml
  const port = await closedPort();
  const down = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const common = { modules: true, modulesRoot: out, scriptPath: join(out, 'cloudflare-demo.js'), compatibilityDate, compatibilityFlags };
  mf = new Miniflare({
    handleStructuredLogs: ({ message }: { message: string }) => { logs.push(message); },
    workers: [
      routed({ ...common, name: 'pg', bindings: { PGDRAIN_TOKEN: TOKEN, DATABASE_DRIVER: 'pg', DATABASE_URL: down } }),
      routed({ ...common, name: 'neon', bindings: { PGDRAIN_TOKEN: TOKEN, DATABASE_URL: down, NEON_WS_PROXY: `ws://127.0.0.1:${port}/v2` } }),
      // Neon's console also shows an https:// URL (its HTTP endpoint): pasted as DATABASE_URL, pg would look up a host of it.
      routed({ ...common, name: 'pg-https-url', bindings: { PGDRAIN_TOKEN: TOKEN, DATABASE_DRIVER: 'pg',
                                                             DATABASE_URL: `https://127.0.0.1:${port}/sql` } }),
    ],
  });
  await mf.ready;
}, 120_000);

describe('Cloudflare Worker whose database cannot be reached', () => {
  for (const name of ['pg', 'neon']) {
    it(`over ${name}: POST /jobs and POST /drain answer 503 database_unavailable`, async () => {
      const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
      for (const [path, body] of [['/jobs', '{"task": "demo.math.sum", "dedupeKey": "k1"}'], ['/drain', '{"budgetSeconds": 5}']] as const) {
        const response = await workerStub(mf, name).fetch(`http://worker${path}`, { method: 'POST', headers, body });
        const text = await response.text();
        expect({ path, status: response.status, text }).toMatchObject({ status: 503 });
        expect(JSON.parse(text)).toMatchObject({ error: { code: 'database_unavailable' } });
      }
    }, 60_000);
  }
});

describe('Cloudflare Worker whose DATABASE_URL is not a postgres:// URL', () => {
  it('over pg: fails naming the binding (500 not_configured), not as a database that is down', async () => {
    const response = await workerStub(mf, 'pg-https-url').fetch('http://worker/jobs', { method: 'POST', body: '{"task": "demo.math.sum"}',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
    expect({ status: response.status, body: await response.json() }).toMatchObject({
      status: 500, body: { error: { code: 'not_configured', field: 'env.DATABASE_URL', message: 'env.DATABASE_URL: must be a postgres:// URL' } } });
  }, 60_000);
});
