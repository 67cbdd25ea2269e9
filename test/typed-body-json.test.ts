// A typed task's body type is what its handler receives, and the body
// travels as JSON: a body type JSON would change (a Date arrives as a
// string, a method is dropped, undefined in an array arrives as null) is
// refused at defineTask, where the handler's type is written. The refusals
// are `@ts-expect-error` lines: `npx tsc -p tsconfig.test.json` fails when
// one of them typechecks. The accepted types keep their inferred, typed
// publish, and a drain hands the handler what was published.
import { describe, expect, expectTypeOf, it } from 'vitest';
import { createQueue, defineTask, type AsJson, type BatchContext, type BatchItem, type Handler, type JobContext,
  type Json, type JsonBody, type NotJson } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const queue = () => createQueue({ driver: { ...db.driver, close: async () => {} } });
const deadline = () => Date.now() + 120_000;

interface Mail { to: string; cc?: string[] | undefined; note: string | undefined; sentAt?: string }
type Tree = { label: string; children: Tree[] };
class Point { x = 0; y = 0; }
class Shape { sides = 3; area() { return 1; } }

describe('a typed body type must be its own JSON form', () => {
  it('refuses, at defineTask, a body type whose values JSON changes', () => {
    const q = queue();
    // @ts-expect-error a Date arrives as its ISO string
    q.defineTask('t.date', async (b: { at: Date }) => b.at.getTime());
    // @ts-expect-error a Date arrives as its ISO string, in a union too
    q.defineTask('t.date-or-string', async (b: { at: Date | string }) => b.at);
    // @ts-expect-error an optional Date too
    q.defineTask('t.date-optional', async (b: { at?: Date }) => b.at);
    // @ts-expect-error a Date as the whole body
    q.defineTask('t.date-body', async (b: Date) => b.getTime());
    // @ts-expect-error publish refuses a BigInt
    q.defineTask('t.bigint', async (b: { n: bigint }) => String(b.n));
    // @ts-expect-error publish refuses a Map
    q.defineTask('t.map', async (b: { tags: Map<string, number> }) => b.tags.size);
    // @ts-expect-error publish refuses a Set
    q.defineTask('t.set', async (b: { tags: Set<string> }) => b.tags.size);
    // @ts-expect-error a method is dropped: the handler would call what is not there
    q.defineTask('t.method', async (b: Shape) => b.area());
    // @ts-expect-error a function is dropped
    q.defineTask('t.fn', async (b: { then: () => void }) => b.then());
    // @ts-expect-error an object with toJSON arrives as what toJSON returns
    q.defineTask('t.tojson', async (b: { money: { toJSON(): string; cents: number } }) => b.money.cents);
    // @ts-expect-error undefined in an array arrives as null
    q.defineTask('t.array-undefined', async (b: (string | undefined)[]) => b.length);
    // @ts-expect-error a body published as undefined arrives as null
    q.defineTask('t.optional-body', async (b?: Mail) => b?.to);
    // @ts-expect-error deep inside too
    q.defineTask('t.deep', async (b: { a: { b: [{ c: Date }] } }) => b.a.b[0].c);
  });

  it('refuses them in every overload and with an explicit type argument', () => {
    // @ts-expect-error a transactional task
    defineTask('t.tx', async (b: { at: Date }, ctx) => ctx.db.query('select $1', [b.at]), { transactional: true });
    // @ts-expect-error a batch task's BatchItem<Body>
    defineTask('t.batch', async (jobs: BatchItem<{ at: Date }>[], _ctx: BatchContext) => jobs.map((j) => j.body.at.getTime()), { batch: true });
    // @ts-expect-error the type argument given
    defineTask<{ at: Date }>('t.explicit', async (b) => b.at.getTime());
    // @ts-expect-error queue.defineTask's transactional overload
    queue().defineTask('t.qtx', async (b: { n: bigint }, ctx) => ctx.db.query('select 1').then(() => b.n), { transactional: true });
  });

  it('keeps the inferred, typed publish of every JSON body type, interfaces and recursive types included', () => {
    const q = queue();
    const mail = q.defineTask('t.mail', async (b: Mail) => b.to);
    expectTypeOf(mail.publish).parameter(0).toEqualTypeOf<Mail>();
    expectTypeOf(q.defineTask('t.tree', (b: Tree) => b.label).publish).parameter(0).toEqualTypeOf<Tree>();
    expectTypeOf(q.defineTask('t.json', (b: Json) => b).publish).parameter(0).toEqualTypeOf<Json>();
    expectTypeOf(q.defineTask('t.unknown', (b: unknown) => b).publish).parameter(0).toEqualTypeOf<unknown>();
    expectTypeOf(q.defineTask('t.none', () => 1).publish).parameter(0).toEqualTypeOf<unknown>();
    expectTypeOf(q.defineTask('t.null', (b: { n: 1 } | null) => b).publish).parameter(0).toEqualTypeOf<{ n: 1 } | null>();
    expectTypeOf(q.defineTask('t.tuple', (b: readonly [number, string]) => b).publish).parameter(0)
      .toEqualTypeOf<readonly [number, string]>();
    expectTypeOf(q.defineTask('t.record', (b: Record<string, number[]>) => b).publish).parameter(0)
      .toEqualTypeOf<Record<string, number[]>>();
    // Data shaped as an Error's type ({ name, message }) is plain data.
    expectTypeOf(q.defineTask('t.notice', (b: { name: string; message: string }) => b.name).publish).parameter(0)
      .toEqualTypeOf<{ name: string; message: string }>();
    // A class of data fields only arrives as a plain object of them: its type still describes it.
    expectTypeOf(q.defineTask('t.point', (b: Point) => b.x).publish).parameter(0).toEqualTypeOf<Point>();
    expectTypeOf(defineTask('t.batch-mail', async (jobs: BatchItem<Mail>[], _ctx: BatchContext) => jobs.map((j) => j.body.to),
                            { batch: true }).publish).parameter(0).toEqualTypeOf<Mail>();
    expectTypeOf(defineTask('t.tx-mail', async (b: Mail, ctx) => ctx.db.query('select $1', [b.to]), { transactional: true })
      .publish).parameter(0).toEqualTypeOf<Mail>();
  });

  it('names the part that is not JSON, and a generic wrapper passes the check on', () => {
    expectTypeOf<AsJson<{ at: Date; n: number }>>()
      .toEqualTypeOf<{ at: NotJson<'a Date arrives as its ISO string: type it string, date.toISOString()'>; n: number }>();
    // The refusal leads with each part's path and reason (a string tsc never cuts), then the whole JSON form.
    type Refused = { a: { at: Date }; list: { m?: Map<string, number> }[]; pair: [string, bigint]; n: number;
      deep: { b: { c: { d: { e: { f: { g: string } } } } } } }; // a part that is JSON is not walked, however deep
    expectTypeOf<JsonBody<Refused>['pgdrain: the body type is not its JSON form']>().toEqualTypeOf<
      | 'body.a.at: a Date arrives as its ISO string: type it string, date.toISOString()'
      | 'body.list[number].m: a Map, Set or Promise is refused (JSON writes it as {}): type it as plain data'
      | 'body.pair[1]: a BigInt is refused (JSON has none): type it string, String(n)'>();
    expectTypeOf<JsonBody<Refused>['its JSON form']>().toEqualTypeOf<AsJson<Refused>>();
    // A recursive type: five levels named, the rest told as deeper.
    type Chain = { at: Date; next: Chain | null };
    expectTypeOf<JsonBody<Chain>['pgdrain: the body type is not its JSON form']>().toEqualTypeOf<
      `body${'' | '.next' | '.next.next' | '.next.next.next' | '.next.next.next.next'}.at: a Date arrives as its ISO string: type it string, date.toISOString()`
      | "body.next.next.next.next.next: a part deeper in it (see 'its JSON form')">();
    expectTypeOf<AsJson<Mail>>().toEqualTypeOf<{ to: string; cc?: string[] | undefined; note: string | undefined; sentAt?: string }>();
    expectTypeOf<JsonBody<Mail>>().toEqualTypeOf<unknown>();
    const wrap = <B>(name: string, handler: Handler<B> & JsonBody<B>) => defineTask(name, handler);
    expectTypeOf(wrap('t.wrapped', async (b: Mail) => b.to).publish).parameter(0).toEqualTypeOf<Mail>();
    // @ts-expect-error the wrapper's callers are checked as defineTask's are
    wrap('t.wrapped-date', async (b: { at: Date }) => b.at);
  });

  it('hands the handler what was published, for the body types it accepts', async () => {
    const q = queue();
    const got: unknown[] = [];
    const keep = (b: unknown, _ctx: JobContext) => void got.push(b);
    const mail = q.defineTask('t.keep-mail', (b: Mail, ctx) => keep(b, ctx));
    const tree = q.defineTask('t.keep-tree', (b: Tree, ctx) => keep(b, ctx));
    await mail.publish({ to: 'ada@example.com', note: 'hi', sentAt: '2030-01-01T00:00:00.000Z' });
    await mail.publish({ to: 'bob@example.com', cc: undefined, note: undefined });
    await tree.publish({ label: 'root', children: [{ label: 'leaf', children: [] }] });
    expect(await q.drain(10, deadline())).toMatchObject({ succeeded: 3 });
    // A property published as undefined is not there (read, it is undefined, as its type says); toStrictEqual tells.
    const byText = (a: unknown, b: unknown) => JSON.stringify(a).localeCompare(JSON.stringify(b));
    expect(got.sort(byText)).toStrictEqual([{ label: 'root', children: [{ label: 'leaf', children: [] }] },
                                            { note: 'hi', sentAt: '2030-01-01T00:00:00.000Z', to: 'ada@example.com' },
                                            { to: 'bob@example.com' }]);
  });
});
