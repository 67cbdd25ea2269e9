// The Cloudflare Worker tests' shared set-up: `wrangler deploy --dry-run`
// bundles a Worker (the demo of wrangler.toml, or one a test writes), and
// Miniflare runs the bundle in workerd, reaching the test PostgreSQL through
// Hyperdrive.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

export const root = resolve(import.meta.dirname, '../..');

const toml = readFileSync(join(root, 'wrangler.toml'), 'utf8');
/** wrangler.toml's compatibility date, as the deployed demo Worker gets it. */
export const compatibilityDate = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(toml)![1]!;
/** wrangler.toml's compatibility flags (nodejs_compat, enable_request_signal), as the deployed demo Worker gets them. */
export const compatibilityFlags = [.../^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml)![1]!.matchAll(/"([^"]+)"/g)].map((m) => m[1]!);

/** `wrangler deploy --dry-run` with args, run in cwd (the repository unless told), its telemetry off. */
export async function wranglerDryRun(args: string[], cwd = root): Promise<void> {
  await promisify(execFile)(join(root, 'node_modules/.bin/wrangler'), ['deploy', '--dry-run', ...args], {
    cwd, env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', NO_COLOR: '1' },
  });
}

/** A Hyperdrive binding's URL: Miniflare's insists on a password; the test cluster trusts local connections and ignores it. */
export function hyperdriveUrl(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  url.password = 'unused';
  return url.href;
}

/**
 * Bundles the demo Worker into outdir and answers the Miniflare options that
 * run it with HYPERDRIVE bound to the database (add a name and bindings).
 */
export async function demoWorker(outdir: string, databaseUrl: string) {
  await wranglerDryRun(['--outdir', outdir]);
  // modulesRoot: module names are relative to it, and workerd refuses '..' in them.
  return { modules: true, modulesRoot: outdir, scriptPath: join(outdir, 'cloudflare-demo.js'), compatibilityDate,
           compatibilityFlags, hyperdrives: { HYPERDRIVE: hyperdriveUrl(databaseUrl) } };
}
