// An esbuild plugin for the bundles (CLI, Lambda): zod re-exports all of its
// ~50 message locales through its namespace object, which defeats tree
// shaking (about 250 KiB, and their load time). Error messages here are
// English: keep `en` and leave the others out.
import { dirname, join } from 'node:path';

export const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]/.test(args.importer) ? { path: join(args.resolveDir, '../locales/en.js'), namespace: 'zod-locales' } : undefined);
    b.onLoad({ filter: /.*/, namespace: 'zod-locales' }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(args.path)};`,
      resolveDir: dirname(args.path),
    }));
  },
};
