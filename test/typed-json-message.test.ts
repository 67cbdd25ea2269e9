// What tsc prints when defineTask refuses a body or result type: on a wide
// type it cuts the type in its message (`{ ...; }`, `... 21 more ...`), so
// the NotJson part could be cut away. The error type leads with the parts as
// `path: why` strings, which tsc prints whole. Compiled as a user compiles it:
// against the built package types (dist/: run `npm run build` first),
// resolved by the package name, with tsc's default truncation.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { root } from './support/docs.js';

const dir = mkdtempSync(join(root, 'node_modules/.pgdrain-json-message-')); // inside the package, so its name resolves
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The first line of each error tsc reports for this file, with its line number. */
function errorsOf(code: string): string[] {
  const file = join(dir, 'tasks.ts');
  writeFileSync(file, code);
  const config = ts.parseJsonConfigFileContent(ts.readConfigFile(join(root, 'tsconfig.json'), ts.sys.readFile).config, ts.sys, root);
  const program = ts.createProgram([file], { ...config.options, noEmit: true, rootDir: dir, declaration: false, sourceMap: false,
                                             inlineSources: false, typeRoots: [join(root, 'node_modules/@types')] });
  return ts.getPreEmitDiagnostics(program).map((d) =>
    `${d.file!.getLineAndCharacterOfPosition(d.start!).line + 1}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n').split('\n')[0]}`);
}

const wide = Array.from({ length: 30 }, (_, i) => `f${i}: string;`).join(' ');

describe('a refused body or result type', () => {
  it('names its parts in the first line of the error, however wide the type', () => {
    const errors = errorsOf(`import type { Queue } from 'pgdrain';
declare const queue: Queue;
type Order = { ${wide} lines: { sku: string; shippedAt: Date; tags: Set<string> }[] };
queue.defineTask('order.ship', async (order: Order) => order.f0);
queue.defineTask('order.read', async () => ({ ${wide.replace(/: string;/g, ": '',")} at: new Date() }));
`);
    expect(errors).toHaveLength(2);
    // Before: 'pgdrain: the body type is not its JSON form': { f0: string; … 21 more …; lines: { …; }[]; }: neither part shown.
    expect(errors[0]).toContain("'pgdrain: the body type is not its JSON form': "
      + '"body.lines[number].shippedAt: a Date arrives as its ISO string: type it string, date.toISOString()" | '
      + '"body.lines[number].tags: a Map, Set or Promise is refused (JSON writes it as {}): type it as plain data"');
    expect(errors[0]).toMatch(/^4: /);
    expect(errors[1]).toContain("'pgdrain: the result type is not its JSON form': "
      + '"result.at: a Date arrives as its ISO string: type it string, date.toISOString()"');
  });
});
