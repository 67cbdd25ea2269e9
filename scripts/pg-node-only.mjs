// An esbuild plugin for the CLI bundle, which runs only on Node: node-postgres
// probes for Cloudflare Workers at load by constructing a `Response`, and on
// Node 20 (no `navigator`) that first touch of `Response` loads undici, about
// 30 ms of every CLI start. Here the answer is always "not Cloudflare".
// The build fails if pg's code no longer has the probe, so a pg upgrade
// cannot silently undo or break this.
import { readFile } from 'node:fs/promises';

const PROBE = 'function isCloudflareRuntime() {';

export const pgNodeOnly = {
  name: 'pg-node-only',
  setup(b) {
    b.onLoad({ filter: /[\\/]pg[\\/]lib[\\/]stream\.js$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      if (!source.includes(PROBE)) {
        throw new Error(`pg-node-only: ${args.path} no longer defines isCloudflareRuntime(); update scripts/pg-node-only.mjs`);
      }
      return { contents: source.replace(PROBE, `${PROBE}\n  return false;`), loader: 'js' };
    });
  },
};
