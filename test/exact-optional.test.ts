// The public option types under a user's `exactOptionalPropertyTypes`:
// test/types/exact-optional.ts (README's snippets, and every optional option
// given a value that may be undefined) compiles against the declarations this
// package emits, as an application with that flag compiles against them.
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'pgdrain-eopt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tsc = (args: string[]) => promisify(execFile)(join(root, 'node_modules/.bin/tsc'), args, { cwd: root })
  .then(({ stdout }) => stdout, (error: { stdout?: string; message: string }) => error.stdout || error.message);

describe('exactOptionalPropertyTypes', () => {
  it("README's snippets and every optional option compile with it (undefined is taken as absent)", async () => {
    // The declarations, laid out as in the repository: the snippet file's relative imports find them.
    expect(await tsc(['-p', 'tsconfig.json', '--emitDeclarationOnly', '--outDir', dir])).toBe('');
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    mkdirSync(join(dir, 'test/types'), { recursive: true });
    cpSync(join(root, 'test/types/exact-optional.ts'), join(dir, 'test/types/exact-optional.ts'));
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true,
                         exactOptionalPropertyTypes: true, noEmit: true, skipLibCheck: true, types: ['node'] },
      files: ['test/types/exact-optional.ts'],
    }));
    expect(await tsc(['-p', join(dir, 'tsconfig.json')])).toBe('');
  }, 120_000);
});
