// Micro-benchmark of a drain's per-job handler lookup (src/tasks.ts): a real
// ESM module namespace of 50 exports (40 plain handlers, 5 defineTask
// results under other export names, 5 namespaces of 2 such each), looked up
// twice per job as a drain does (its batch check, then runHandler). A: a
// bundle whose tasks.ts has no TaskLookup (resolveHandler, a walk per lookup
// that misses by path); B: one TaskLookup per drain. Names: a renamed
// top-level task, a renamed nested one, and one found by its path.
//
//   npx esbuild BASE/src/tasks.ts --bundle --platform=node --format=esm --outfile=dist/lookup/a.mjs
//   npx esbuild src/tasks.ts --bundle --platform=node --format=esm --outfile=dist/lookup/b.mjs
//   npx esbuild bench/task-lookup.ts --bundle --platform=node --format=esm --packages=external --outfile=dist/lookup/bench.mjs
//   node dist/lookup/bench.mjs dist/lookup/a.mjs dist/lookup/b.mjs
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

type Handler = (...args: unknown[]) => unknown;
interface TasksModule {
  resolveHandler(tasks: object, name: string): Handler | undefined;
  TaskLookup?: new (tasks: object) => { resolve(name: string): Handler | undefined };
}

const lines: string[] = [];
const defined = (name: string) => `Object.assign(async () => null, { task: ${JSON.stringify(name)} })`;
for (let i = 0; i < 40; i++) lines.push(`export const plain${i} = async () => ${i};`);
for (let i = 0; i < 5; i++) lines.push(`export const renamed${i} = ${defined(`top.task${i}`)};`);
for (let i = 0; i < 5; i++) lines.push(`export const ns${i} = { a: ${defined(`ns${i}.a.task`)}, b: ${defined(`ns${i}.b.task`)} };`);
const namespace = await import(`data:text/javascript,${encodeURIComponent(lines.join('\n'))}`) as object;
// As createQueue holds it (its registry, a spread of the module) and the CLI's queue does.
const spread = { ...namespace };

const JOBS = 200_000;
const names = ['top.task4', 'ns4.b.task', 'plain39'];

async function perJob(file: string, tasks: object, name: string): Promise<number> {
  const mod = await import(pathToFileURL(resolve(file)).href) as TasksModule;
  const run = (): number => {
    const lookup = mod.TaskLookup ? new mod.TaskLookup(tasks) : { resolve: (n: string) => mod.resolveHandler(tasks, n) };
    const start = process.hrtime.bigint();
    for (let i = 0; i < JOBS; i++) {
      if (!lookup.resolve(name) || !lookup.resolve(name)) throw new Error(`${name} not found`);
    }
    return Number(process.hrtime.bigint() - start) / JOBS;
  };
  run(); // warm-up
  const runs = [run(), run(), run(), run(), run()].sort((x, y) => x - y);
  return runs[2]!;
}

const [a, b] = process.argv.slice(2);
for (const [kind, tasks] of [['namespace', namespace], ['spread', spread]] as const) {
  for (const name of names) {
    const line = [kind.padEnd(10), name.padEnd(11)];
    for (const file of [a, b]) if (file) line.push(`${file.split('/').pop()}: ${(await perJob(file, tasks, name)).toFixed(1)} ns/job`);
    console.log(line.join('  '));
  }
}
