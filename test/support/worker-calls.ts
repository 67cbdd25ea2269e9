// Calls into a Worker that Miniflare runs, through Miniflare's HTTP entry
// (dispatchFetch) and never through mf.getWorker(): that stub reads each
// property (.fetch, .scheduled) with a blocking call to a helper thread whose
// handshake can take the notify of the call before it, and then fails with
// miniflare's own "AssertionError: false == true" (fetch-sync.ts; fixed
// upstream in workers-sdk#15552, after the newest miniflare the registry
// holds). It failed a CI run under load; dispatchFetch has no such handshake.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { afterAll } from 'vitest';

const host = (name: string) => `${name}.worker.test`;

/** A Worker's Miniflare options, given a route of its own so workerCalls can reach it by name. */
export function routed<T extends { name: string }>(options: T): T & { routes: string[] } {
  return { ...options, routes: [`${host(options.name)}/*`] };
}

/** Miniflare's shared option that lets workerCalls run a Worker's scheduled() over HTTP. */
export const triggerHandlers = { unsafeTriggerHandlers: true } as const;

/** A Worker as mf.getWorker(name) would hand it, reached over HTTP. */
export interface WorkerStub {
  /** Runs the Worker's scheduled() (cron '* * * * *' unless given); answers its outcome ('ok' or 'exception'). */
  scheduled(options?: { cron: string }): Promise<{ outcome: string }>;
  /** Sends a request to the Worker: the URL's host is ignored, its path and query kept. */
  fetch(url: string, init?: { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal }): Promise<Response>;
}

/** The Worker named name in mf (given routed(), and mf the triggerHandlers option). */
export function workerStub(mf: Miniflare, name: string): WorkerStub {
  return {
    async scheduled(options = { cron: '* * * * *' }) {
      const response = await mf.dispatchFetch(`http://${host(name)}/cdn-cgi/handler/scheduled?cron=${encodeURIComponent(options.cron)}`);
      return { outcome: await response.text() };
    },
    async fetch(url, init) {
      const { pathname, search } = new URL(url);
      return await mf.dispatchFetch(`http://${host(name)}${pathname}${search}`, init as never) as unknown as Response;
    },
  };
}

/**
 * A test file's Worker set-up: a temp directory for its bundle, and the
 * Miniflare that runs it (start()), both gone after the file's tests.
 */
export function workerHarness(prefix: string) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  let mf: Miniflare | undefined;
  afterAll(async () => {
    await mf?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    /** Starts Miniflare with options (each Worker given routed(), and triggerHandlers), once ready. */
    async start(options: ConstructorParameters<typeof Miniflare>[0]): Promise<Miniflare> {
      mf = new Miniflare(options);
      await mf.ready;
      return mf;
    },
    /** The Worker named name, once start() has run. */
    stub: (name: string) => workerStub(mf!, name),
  };
}
