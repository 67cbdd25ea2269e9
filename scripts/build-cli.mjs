#!/usr/bin/env node
// Bundles the CLI into one ES module, dist/cli.mjs (the package's bin, from
// src/cli/bin.ts), and the chunks it loads after connecting or on demand
// (dist/cli-chunks/): a few files to read
// instead of hundreds halves its start-up, which a drain woken every minute
// by a CronJob pays each time. PGlite stays outside (it loads
// its WebAssembly from its own package, and only when no DSN is given).
// Run after `npm run build:sql` (npm run build does).
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pgNodeOnly } from './pg-node-only.mjs';
import { zodEnglishOnly } from './zod-english-only.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

rmSync(join(root, 'dist/cli-chunks'), { recursive: true, force: true }); // chunks of earlier builds

await build({
  entryPoints: [join(root, 'src/cli/bin.ts')],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // What loads only on demand (the HTTP server, PGlite's driver) goes to
  // chunks of its own, Node built-ins included: bundled into one file, their
  // imports of node:http, node:http2 and the like ran at every start (~20 ms).
  splitting: true,
  outdir: join(root, 'dist'),
  entryNames: 'cli',
  chunkNames: 'cli-chunks/[name]-[hash]',
  outExtension: { '.js': '.mjs' },
  minify: true,
  sourcemap: 'linked',
  legalComments: 'none',
  external: ['pg-native', '@electric-sql/pglite', '@electric-sql/pglite/*'],
  // pg is CommonJS and calls require() for Node built-ins; give the ES module one.
  banner: { js: "import { createRequire as __pgdrainCreateRequire } from 'node:module'; const require = __pgdrainCreateRequire(import.meta.url);" },
  plugins: [zodEnglishOnly, pgNodeOnly],
  logLevel: 'warning',
});
