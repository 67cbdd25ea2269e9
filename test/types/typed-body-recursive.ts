// Compiled by `npx tsc -p tsconfig.test.json` (never run): the JSON types
// users bring as a typed task's body type, recursive through arrays, are
// accepted with their typed publish. At top level on purpose: a "Type
// instantiation is excessively deep" met first inside another statement
// (an @ts-expect-error line, a vitest callback) can be hidden there and
// leave the type an error type that then accepts anything.
import { expectTypeOf } from 'vitest';
import type { z } from 'zod';
import type { AsJson, Json, JsonBody, Queue } from '../../src/index.js';

declare const queue: Queue;

// pgdrain's own Json: Json = … | Json[] | { [key: string]: Json }.
expectTypeOf(queue.defineTask('t.json', (b: Json) => b).publish).parameter(0).toEqualTypeOf<Json>();
expectTypeOf<JsonBody<{ data: Json; list: Json[] }>>().toEqualTypeOf<unknown>();

// Prisma's JsonValue: its arrays are interfaces extending Array (and ReadonlyArray for input).
type PrismaJsonObject = { [Key in string]?: PrismaJsonValue };
interface PrismaJsonArray extends Array<PrismaJsonValue> {}
type PrismaJsonValue = string | number | boolean | PrismaJsonObject | PrismaJsonArray | null;
interface PrismaInputJsonArray extends ReadonlyArray<PrismaInputJsonValue | null> {}
type PrismaInputJsonValue = string | number | boolean | PrismaInputJsonArray | { readonly [Key in string]?: PrismaInputJsonValue | null };
expectTypeOf(queue.defineTask('t.prisma', (b: { id: number; data: PrismaJsonValue }) => b.id).publish).parameter(0)
  .toEqualTypeOf<{ id: number; data: PrismaJsonValue }>();
expectTypeOf<JsonBody<{ data: PrismaInputJsonValue }>>().toEqualTypeOf<unknown>();

// type-fest's JsonValue (readonly arrays too), zod's z.json().
type FestJsonValue = string | number | boolean | null | FestJsonObject | FestJsonArray;
type FestJsonObject = { [Key in string]: FestJsonValue } & { [Key in string]?: FestJsonValue | undefined };
type FestJsonArray = FestJsonValue[] | readonly FestJsonValue[];
expectTypeOf<JsonBody<FestJsonValue>>().toEqualTypeOf<unknown>();
type ZodJson = z.infer<ReturnType<typeof z.json>>;
expectTypeOf(queue.defineTask('t.zod-json', (b: { payload: ZodJson }) => b).publish).parameter(0)
  .toEqualTypeOf<{ payload: ZodJson }>();

// An array's element is still checked, however the array is written.
interface DateList extends Array<Date> {}
type DateJson = string | DateJson[] | { at: Date };
expectTypeOf<JsonBody<{ at: DateList }>>().not.toEqualTypeOf<unknown>();
expectTypeOf<JsonBody<{ at: readonly Date[] }>>().not.toEqualTypeOf<unknown>();
expectTypeOf<JsonBody<DateJson>>().not.toEqualTypeOf<unknown>();
expectTypeOf<AsJson<{ at: readonly (Date | string)[] }>>()
  .toEqualTypeOf<{ at: readonly (string | AsJson<Date>)[] }>();
