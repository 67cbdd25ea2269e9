// Micro-benchmark of a handler result's encoding (resultJson), per 500-job
// batch of results, as a drain encodes each before its settle. A: a bundle
// of the base's resultJson (src/json-text.ts before result-json.ts);
// B: this tree's (src/result-json.ts). Shapes: undefined (a no-op handler:
// nothing to encode), a small plain object, nested plain objects, an
// array of 20 numbers, a string, a plain object with an array of
// objects, one holding a Date (a row's timestamp), and one holding a class
// instance of data, one holding a Buffer (its toJSON's { type, data } taken
// whole, not walked), one holding values with their own toJSON (Decimal.js,
// Luxon, bson stand-ins: toJSON returning a string or plain data), and a
// 1.2 MB result of them (4 batches of 5). Each is read once by json-loss.ts
// jsonForm's walk, which copies what it reads; JSON.stringify writes the
// copy. SHAPES=tojson,big runs those only.
//
//   mkdir -p dist/result-json/base && git archive BASE src | tar -x -C dist/result-json/base
//   npx esbuild dist/result-json/base/src/json-text.ts --bundle --platform=node --format=esm --outfile=dist/result-json/a.mjs
//   npx esbuild src/result-json.ts --bundle --platform=node --format=esm --outfile=dist/result-json/b.mjs
//   npx esbuild bench/result-json.ts --bundle --platform=node --format=esm --packages=external --outfile=dist/result-json/bench.mjs
//   node dist/result-json/bench.mjs dist/result-json/a.mjs dist/result-json/b.mjs
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

type Encode = (result: unknown) => string | null;

class Point { constructor(readonly x: number, readonly y: number) {} }
class Decimal { constructor(private readonly text: string) {} toJSON() { return this.text; } }
class DateTime { constructor(private readonly ms: number) {} toJSON() { return new Date(this.ms).toISOString(); } }
class ObjectId { constructor(private readonly hex: string) {} toJSON() { return { $oid: this.hex }; } }
const line = (i: number) => ({ id: new ObjectId(`64b${i}`), sku: `sku-${i}`, qty: i % 9, price: new Decimal(`${i}.25`), at: new DateTime(i) });
/** About 1.2 MB of JSON: 12,000 lines of toJSON values. */
const bigLines = Array.from({ length: 12_000 }, (_, i) => line(i));

const BATCH = 500;
const BATCHES = 200;
const shapes: Record<string, (i: number) => unknown> = {
  undefined: () => undefined,
  small: (i) => ({ sent: true, id: `msg-${i}`, count: i % 7 }),
  nested: (i) => ({ id: i, user: { name: `user ${i}`, address: { city: 'Lyon', zip: `690${i % 10}` } }, meta: { a: { b: { c: i } } } }),
  numbers: (i) => Array.from({ length: 20 }, (_, k) => i * 20 + k + 0.5),
  string: (i) => `sent message ${i} to ada@example.com: 250 OK queued as ${i.toString(16)}`,
  lines: (i) => ({ id: i, to: 'ada@example.com', lines: [{ sku: 'a', qty: 1 }, { sku: 'b', qty: 2 }], ok: true }),
  date: (i) => ({ id: i, at: new Date(1_800_000_000_000 + i) }),
  instance: (i) => ({ id: i, point: new Point(i, 1) }),
  bytes: (i) => ({ id: i, file: Buffer.alloc(200, i) }), // a bytea column's Buffer (its toJSON: { type, data })
  tojson: (i) => ({ order: i, lines: [line(i), line(i + 1)] }),
  big: () => ({ lines: bigLines }),
};
/** Batches of a shape, and results per batch: the big one fewer. */
const sizes: Record<string, [number, number]> = { big: [4, 5] };

/** The median of 9 runs (after a warm-up) of encoding BATCHES batches: µs per batch of BATCH results. */
function perBatch(encode: Encode, shape: (i: number) => unknown, [batches, batch] = [BATCHES, BATCH]): number {
  const results = Array.from({ length: batches }, () => Array.from({ length: batch }, (_, i) => shape(i)));
  const run = (): number => {
    let chars = 0;
    // CPU time, not wall time: on a shared machine (load 15 on 2 cores) wall time measured the neighbours.
    const start = process.cpuUsage();
    for (const batch of results) for (const result of batch) chars += encode(result)?.length ?? 0;
    if (chars < 0) throw new Error('unreachable');
    const { user, system } = process.cpuUsage(start);
    return (user + system) / batches;
  };
  run();
  const runs = Array.from({ length: 9 }, run).sort((x, y) => x - y);
  return runs[4]!;
}

const files = process.argv.slice(2);
const encoders = await Promise.all(files.map(async (file) =>
  (await import(pathToFileURL(resolve(file)).href) as { resultJson: Encode }).resultJson));
// Alternating A, B, A, B: a load change on a shared machine hits both.
const only = process.env.SHAPES?.split(',');
for (const [name, shape] of Object.entries(shapes).filter(([n]) => only === undefined || only.includes(n))) {
  const line = [name.padEnd(10)];
  const times = encoders.map(() => [] as number[]);
  // Round 0 only warms: the first encoder would run alone at a call site the others make polymorphic.
  for (let round = 0; round < 4; round++) {
    encoders.forEach((encode, i) => {
      const us = perBatch(encode, shape, sizes[name]);
      if (round > 0) times[i]!.push(us);
    });
  }
  files.forEach((file, i) => line.push(`${file.split('/').pop()}: ${Math.min(...times[i]!).toFixed(1)} µs / ${sizes[name]?.[1] ?? BATCH} results`));
  console.log(line.join('  '));
}
