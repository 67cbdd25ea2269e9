// A GET with a body, in the Workers runtime: workerd hands a GET the body it
// was sent (Node's server drops it), and a signed request's check reads the
// body it signs. So GET /dashboard, signed, is held to the size limit before
// that read, as every API route is: an oversized body is refused while its
// sender is still sending it, never read whole. A small body is read and
// checked (a GET /stats with one was a 500). The demo Worker, bundled by
// `wrangler deploy --dry-run`, runs in workerd through Miniflare (as in
// test/cloudflare.test.ts), reaching the test PostgreSQL through Hyperdrive;
// requests are sent over HTTP to it, as a client would.
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, signRequest } from '../src/http/index.js';
import { testDb } from './support/db.js';
import { demoWorker } from './support/worker-bundle.js';

const db = await testDb();
const TOKEN = 'worker-get-body-token-0123456789';
const SECRET = 'worker-get-body-hmac-secret-0123456789';
const LIMIT = DEFAULT_LIMITS.maxBodyBytes;
const outdir = mkdtempSync(join(tmpdir(), 'pgdrain-worker-get-body-'));
let mf: Miniflare | undefined;
let url: URL;

afterAll(async () => {
  await mf?.dispose();
  rmSync(outdir, { recursive: true, force: true });
});

beforeAll(async () => {
  mf = new Miniflare({ ...await demoWorker(outdir, db.url), bindings: { PGDRAIN_TOKEN: TOKEN, PGDRAIN_HMAC_SECRET: SECRET } });
  url = await mf.ready;
}, 180_000);

/**
 * Sends GET path with headers and the bytes of body, then, unless end, sends
 * nothing more and leaves the request open: the answer can only come from a
 * server that did not wait for the whole body.
 */
function get(path: string, headers: Record<string, string | number>, body: Buffer, end: boolean) {
  return new Promise<{ status: number; json: any }>((done, fail) => {
    const req = request(new URL(path, url), { method: 'GET', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { text += chunk; });
      res.on('end', () => {
        req.destroy();
        done({ status: res.statusCode!, json: JSON.parse(text) });
      });
    });
    req.on('error', fail);
    if (body.length > 0) req.write(body);
    if (end) req.end();
    else req.flushHeaders();
  });
}

const tooLarge = { error: { code: 'payload_too_large', message: `body: must be at most ${LIMIT} bytes`, field: 'body' } };

describe('a signed GET /dashboard with a body, in workerd', () => {
  it('a body past the size limit, without a length, is refused (413) while it is still being sent', async () => {
    const signed = await signRequest(SECRET, 'GET', '/dashboard', '');
    // More than the limit, and not the end of it: a server that read the body whole would still be waiting.
    const answer = await get('/dashboard', { ...signed, 'transfer-encoding': 'chunked' }, Buffer.alloc(LIMIT + 64 * 1024, 'y'), false);
    expect(answer).toEqual({ status: 413, json: tooLarge });
  }, 30_000);

  it('a Content-Length past the size limit is refused (413) before a byte of the body is sent', async () => {
    const signed = await signRequest(SECRET, 'GET', '/dashboard', '');
    const answer = await get('/dashboard', { ...signed, 'content-length': LIMIT + 1 }, Buffer.alloc(0), false);
    expect(answer).toEqual({ status: 413, json: tooLarge });
  }, 30_000);
});

describe('a GET with a small body, in workerd: read and checked against its signature', () => {
  it('GET /dashboard and GET /stats, with or without a length: the answer, or 401 for a body it did not sign', async () => {
    const body = 'x'.repeat(1000);
    for (const path of ['/dashboard', '/stats']) {
      const framings: Record<string, string | number>[] = [{ 'transfer-encoding': 'chunked' }, { 'content-length': body.length }];
      for (const framing of framings) {
        const what = `${path} ${JSON.stringify(framing)}`;
        const signed = await signRequest(SECRET, 'GET', path, body);
        const ok = await new Promise<number>((done, fail) => {
          const req = request(new URL(path, url), { method: 'GET', headers: { ...signed, ...framing } }, (res) => {
            res.resume();
            done(res.statusCode!);
          });
          req.on('error', fail);
          req.end(body);
        });
        expect(ok, what).toBe(200);
        const other = await get(path, { ...await signRequest(SECRET, 'GET', path, ''), ...framing }, Buffer.from(body), true);
        expect(other, what).toEqual({ status: 401, json: { error: expect.objectContaining({ message: 'invalid signature' }) } });
      }
    }
  });
});
