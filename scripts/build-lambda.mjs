#!/usr/bin/env node
// Builds the deployable Lambda bundle: one ES module holding functions/lambda.ts,
// your tasks module, pg, hono and zod; its `handler` export is the function's
// handler (Handler: index.handler).
//
//   node scripts/build-lambda.mjs [--tasks examples/tasks.ts] [--outdir dist/lambda] [--no-minify]
//
// Prints the bundle's size, raw and gzipped. Run `npm run build:sql` first
// (npm run build:lambda does), so the migrations module exists.
import { build } from 'esbuild';
import { readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { zodEnglishOnly } from './zod-english-only.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: 'examples/tasks.ts' },
    outdir: { type: 'string', default: 'dist/lambda' },
    'no-minify': { type: 'boolean', default: false },
  },
});
const tasks = resolve(values.tasks);
try {
  statSync(tasks);
} catch {
  console.error(`build-lambda: --tasks ${values.tasks}: no such file`);
  process.exit(2);
}
const outfile = join(resolve(values.outdir), 'index.mjs');

// A tasks module that imports 'pgdrain' (FailJob, defineTask) gets the source
// this bundle already holds: not dist/ (unbuilt in a fresh clone), and not a
// second copy of the library.
const PGDRAIN_SOURCES = {
  pgdrain: 'src/index.ts', 'pgdrain/pg': 'src/db/pg.ts', 'pgdrain/http': 'src/http/index.ts',
  'pgdrain/lambda': 'functions/lambda.ts',
};
const pgdrainFromSource = {
  name: 'pgdrain-from-source',
  setup(b) {
    b.onResolve({ filter: /^pgdrain(\/[a-z-]+)?$/ }, (args) =>
      PGDRAIN_SOURCES[args.path] ? { path: join(root, PGDRAIN_SOURCES[args.path]) } : undefined);
  },
};

await build({
  stdin: {
    contents: [
      `import * as tasks from ${JSON.stringify(tasks)};`,
      `import { createLambdaHandler } from ${JSON.stringify(join(root, 'functions/lambda.ts'))};`,
      'export const handler = createLambdaHandler(tasks);',
    ].join('\n'),
    resolveDir: root,
    sourcefile: 'lambda-entry.ts',
    loader: 'ts',
  },
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  outfile,
  minify: !values['no-minify'],
  sourcemap: 'external',
  legalComments: 'none',
  // pg's optional native binding is loaded only on request; never here.
  external: ['pg-native'],
  // pg is CommonJS and calls require() for Node built-ins; give the ES module one.
  banner: { js: "import { createRequire as __pgdrainCreateRequire } from 'node:module'; const require = __pgdrainCreateRequire(import.meta.url);" },
  plugins: [zodEnglishOnly, pgdrainFromSource],
  logLevel: 'warning',
});

const bytes = readFileSync(outfile);
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`build-lambda: ${outfile} ${kib(bytes.length)} (gzip ${kib(gzipSync(bytes).length)}), tasks ${values.tasks}`);
