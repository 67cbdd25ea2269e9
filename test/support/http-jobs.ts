// POST /jobs to the HTTP API of a queue, served on a free local port for
// the calling describe block (closed after it), authenticated with a token.
import { serve, type ServerType } from '@hono/node-server';
import { afterAll } from 'vitest';
import { createApp } from '../../src/http/index.js';
import type { Queue } from '../../src/index.js';

const TOKEN = 'test-token-0123456789abcdef';

/** Serves queue's API until the describe block ends; answers a function posting a body to /jobs. */
export function postJobsTo(queue: Queue): (body: unknown) => Promise<{ status: number; body: any }> {
  const servers: ServerType[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  const base = new Promise<string>((done) => {
    const app = createApp({ queue, token: TOKEN });
    servers.push(serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => done(`http://127.0.0.1:${info.port}`)));
  });
  return async (body) => {
    const res = await fetch(`${await base}/jobs`, { method: 'POST', body: JSON.stringify(body),
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
    return { status: res.status, body: await res.json() as any };
  };
}
