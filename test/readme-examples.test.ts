// The documentation's TypeScript examples as a user pastes them: every ```ts
// block of README.md and docs/*.md is compiled with tsc against the package's
// own types (built in dist/, resolved by the package name through its
// "exports", as package-exports.test.ts does: run `npm run build` first),
// under this repository's compiler options (strict, noUncheckedIndexedAccess,
// NodeNext). A block that is a fragment gets only what a reader brings from
// the text around it, declared once in a shared prelude (a `queue`, the
// `JobContext` type, the `res` of a fetch, a `mailer` of theirs): nothing that
// would make a wrong name or option pass.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { docFiles, fencedBlocks, root, type FencedBlock } from './support/docs.js';

const dir = mkdtempSync(join(root, 'node_modules/.pgdrain-readme-')); // inside the package, so its name resolves
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// What the text around a fragment gives its reader. Declared globally, so a
// block that makes its own (`const queue = createQueue(…)`, an import) uses
// that one: each block is compiled as a module of its own.
const prelude = `
import type { Queue, JobContext as Ctx } from 'pgdrain';
declare global {
  type JobContext = Ctx;
  const createQueue: typeof import('pgdrain').createQueue;
  const queue: Queue;
  const connectionString: string;
  const tasks: typeof import('./tasks.js');
  // FailJob / RetryJob: a handler's fetch and its body.
  const res: Response;
  const body: { userId: string };
  // The user's own services in the handler examples.
  const inventory: { isSynced(): Promise<boolean> };
  const stripe: { paymentIntents: { create(params: object): Promise<{ id: string }> } };
  function insertRow(row: string | undefined): Promise<void>;
  function reindexShard(shard: string, signal: AbortSignal): Promise<void>;
  type Mail = { to: string; subject: string };
  const mailer: { sendMany(mails: Mail[], options: { signal: AbortSignal }):
    Promise<Array<{ ok: true; id: string } | { ok: false; reason: string }>> };
}
export {};
`;

function compile(files: Record<string, string>): string[] {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const config = ts.parseJsonConfigFileContent(ts.readConfigFile(join(root, 'tsconfig.json'), ts.sys.readFile).config, ts.sys, root);
  const options = { ...config.options, noEmit: true, rootDir: dir, declaration: false, sourceMap: false, inlineSources: false,
                    typeRoots: [join(root, 'node_modules/@types')] };
  const program = ts.createProgram(Object.keys(files).map((f) => join(dir, f)), options);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file || d.start === undefined) return text;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const block = /block-(\d+)\.ts$/.exec(d.file.fileName);
    const at = block ? blocks[Number(block[1])] : undefined;
    return at ? `${at.file}:${at.line + line}: ${text}` : `${d.file.fileName}:${line + 1}: ${text}`;
  });
}

/** Every ```ts block, README.md's first, then docs/*.md's by file name. */
const blocks: FencedBlock[] = docFiles().flatMap((f) => fencedBlocks(f, 'ts'));
const base = {
  'prelude.d.ts': prelude,
  // The tasks module the examples import: any tasks do.
  'tasks.ts': 'export const math = { sum: async (b: { a: number; b: number }) => ({ sum: b.a + b.b }) };\n',
  // The Sentry example's import, as its package types it (not installed here).
  'sentry.d.ts': "declare module '@sentry/node' {\n  export function captureException(error: unknown, hint?: { tags?: Record<string, string>; extra?: Record<string, unknown> }): string;\n}\n",
};

describe("The documentation's TypeScript examples", () => {
  it('has its blocks (the quick start, handlers, hooks, Worker, Lambda, batch tasks)', () => {
    // 15 in the one-page README; 17 since the split (README's two-block first queue).
    expect(blocks.length).toBeGreaterThanOrEqual(17);
    expect(blocks.some((b) => b.code.includes('createLambdaHandler'))).toBe(true);
    expect(blocks.filter((b) => b.file === 'README.md').length, "README's first queue: tasks.ts and main.ts").toBe(2);
  });

  it('refuses a ```ts block left open (a README edit), naming its line, rather than scanning for ever', () => {
    expect(() => fencedBlocks({ path: 'README.md', text: '# x\n```ts\nconst a = 1;\n```\ntext\n```ts\nconst b = 2;\n' }, 'ts'))
      .toThrow('README.md:6: a ```ts block with no closing ``` line');
  });

  it('each compiles against the package types', () => {
    expect(existsSync(join(root, 'dist/src/index.d.ts')), 'run npm run build first').toBe(true);
    const files: Record<string, string> = { ...base };
    blocks.forEach((b, i) => { files[`block-${i}.ts`] = `${b.code}\nexport {};\n`; });
    // A canary: were 'pgdrain' to resolve to nothing (any), every block would pass.
    files['canary.ts'] = "import { createQueue } from 'pgdrain';\ncreateQueue({ notAnOption: 1 });\n";
    const problems = compile(files);
    expect(problems.filter((p) => p.includes('canary.ts')), "the canary fails on its option: 'pgdrain' resolved to its types")
      .toEqual([expect.stringContaining("'notAnOption' does not exist in type 'QueueOptions'")]);
    expect(problems.filter((p) => !p.includes('canary.ts'))).toEqual([]);
  }, 60_000);
});
