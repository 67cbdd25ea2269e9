// Security review R-sec: GET /healthz takes no credentials and asked the
// database on every request; a Worker opens a connection per request, so
// anyone could make the database open one connection (a backend) per
// request sent. A good answer is now given again for HEALTH_REUSE_MS
// without asking; a failed probe is not kept. The clock is held still
// (Date.now) rather than timed.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createApp, HEALTH_REUSE_MS } from '../src/http/app.js';
import { createQueue } from '../src/index.js';
import { countingDriver } from './support/counting-driver.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'test-token-0123456789abcdef';

afterEach(() => {
  vi.restoreAllMocks();
});

/** The app on driver, with its statements counted by text. */
function counted(driver = { ...db.driver, close: async () => {} }) {
  const counts = new Map<string, number>();
  const app = createApp({ queue: createQueue({ driver: countingDriver(driver, counts), tasks: {} }), token: TOKEN });
  return { app, probes: () => counts.get('select 1') ?? 0 };
}

describe('GET /healthz', () => {
  it('an unauthenticated flood asks the database once per HEALTH_REUSE_MS, not once per request', async () => {
    const T = Date.now();
    const clock = vi.spyOn(Date, 'now').mockReturnValue(T);
    const { app, probes } = counted();
    for (let i = 0; i < 20; i++) {
      const r = await app.request('/healthz');
      expect({ status: r.status, body: await r.json() }).toEqual({ status: 200, body: { status: 'ok' } });
    }
    expect(probes()).toBe(1);
    clock.mockReturnValue(T + HEALTH_REUSE_MS - 1);
    expect((await app.request('/healthz')).status).toBe(200);
    expect(probes()).toBe(1);
    clock.mockReturnValue(T + HEALTH_REUSE_MS);
    expect((await app.request('/healthz')).status).toBe(200);
    expect(probes()).toBe(2);
  });

  it('a failed probe is not kept: the next request asks again', async () => {
    vi.spyOn(Date, 'now').mockReturnValue(Date.now());
    const down = pgDriver('postgres://postgres@127.0.0.1:1/none');
    const { app, probes } = counted(down);
    try {
      for (let i = 0; i < 2; i++) {
        const r = await app.request('/healthz');
        expect({ status: r.status, body: await r.json() })
          .toEqual({ status: 503, body: { error: { code: 'database_unavailable', message: 'database unavailable', field: null } } });
      }
      expect(probes()).toBe(2);
    } finally {
      await down.close();
    }
  });
});
