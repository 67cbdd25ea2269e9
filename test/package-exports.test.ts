// The package's subpaths as a user imports them, by name (Node resolves a
// package's own name through its "exports"): needs `npm run build` first, as
// the CLI tests do. The Lambda handler is bundled with the esbuild command of
// docs/http-and-lambda.md.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { docFile } from './support/docs.js';

const root = resolve(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, { types: string; default: string }>; typesVersions: { '*': Record<string, string[]> };
};
const dir = mkdtempSync(join(root, 'node_modules/.pgdrain-exports-')); // inside the package, so its name resolves
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const run = (file: string, args: string[], cwd = root) => promisify(execFile)(file, args, { cwd });

describe('package exports', () => {
  it('every subpath has its types under "exports" and under "typesVersions" (moduleResolution node)', () => {
    for (const [subpath, target] of Object.entries(pkg.exports)) {
      if (subpath === '.') continue;
      expect(pkg.typesVersions['*'][subpath.slice(2)], subpath).toEqual([target.types]);
    }
    expect(Object.keys(pkg.exports)).toContain('./lambda');
  });

  it("pgdrain/lambda: docs/http-and-lambda.md's handler bundles with its esbuild command and loads", async () => {
    expect(existsSync(join(root, 'dist/functions/lambda.js')), 'run npm run build first').toBe(true);
    const page = docFile('docs/http-and-lambda.md').text;
    const handler = /```ts\n(\/\/ handler\.ts\n[^`]*?)```/.exec(page)?.[1];
    const command = /```sh\n(npx esbuild handler\.ts[^`]*?)```/.exec(page)?.[1];
    expect(handler, 'docs/http-and-lambda.md: the Lambda handler snippet').toBeDefined();
    expect(command, 'docs/http-and-lambda.md: the Lambda esbuild command').toBeDefined();
    writeFileSync(join(dir, 'handler.ts'), handler!);
    writeFileSync(join(dir, 'tasks.ts'), 'export const math = { sum: async (b: { a: number; b: number }) => ({ sum: b.a + b.b }) };\n');
    // The command as the page gives it, through a shell; npx finds the repository's esbuild.
    await run('sh', ['-c', command!], dir);
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e',
      `const m = await import(${JSON.stringify(join(dir, 'dist/lambda/index.mjs'))}); console.log(typeof m.handler);`]);
    expect(stdout.trim()).toBe('function');
  }, 60_000);

  it("npm run build:lambda bundles a tasks module that imports 'pgdrain' from the source, once, without the migrations' SQL", async () => {
    writeFileSync(join(dir, 'outcome-tasks.ts'),
      "import { FailJob } from 'pgdrain';\nexport const billing = { charge: async () => { throw new FailJob('card declined'); } };\n");
    await run(process.execPath, ['scripts/build-lambda.mjs', '--tasks', join(dir, 'outcome-tasks.ts'), '--outdir', join(dir, 'built')]);
    const bundle = readFileSync(join(dir, 'built/index.mjs'), 'utf8');
    expect(bundle.split('pgdrain.fail_job').length - 1).toBe(1); // one copy of the library
    expect(bundle).not.toContain('create table jobs.job_queue'); // a Lambda never migrates
  }, 60_000);
});
