// A typed task's body type must be what its handler receives. The body
// travels as JSON (JSON.stringify at publish, jsonb, JSON.parse at the
// claim), so a body type is accepted only when it is its own JSON form:
// a `{ at: Date }` would typecheck at publish and in the handler while the
// handler gets a string. Refused at defineTask, where the handler's type is
// written, with a message at the part that does not survive the trip.
//
// Why not type the handler's body as the JSON form of the published type (a
// Jsonify<T>, as type-fest's)? The body type is inferred from the handler's
// own annotation (`async (mail: Mail) => …`), which cannot be inferred back
// through such a mapping: every such task would lose its typed publish. And
// a direct call of the task (no queue) hands the handler the value itself.

import type { OUTCOME_TYPE } from './job-errors.js';

/** Says, in a type error, why a part of a body type is not JSON. */
export interface NotJson<Why extends string> {
  'pgdrain: a job body travels as JSON': Why;
}

/**
 * What a FailJob, RetryJob or SnoozeJob in a type is for instead: thrown by
 * a handler, or in a batch answer (In 'item') the job's item itself, which
 * settles the job as if thrown.
 */
type OutcomeWhy<In> = In extends 'item'
  ? "a FailJob, RetryJob or SnoozeJob is to be the job's item, not inside its result: as data JSON keeps only its name"
  : 'a FailJob, RetryJob or SnoozeJob is to be thrown: as data JSON keeps only its name';

/**
 * The JSON form pgdrain accepts for a body type: T itself when JSON keeps
 * it; else T with each part JSON would change replaced by a NotJson saying
 * what it becomes. A property that may be undefined is fine (JSON drops it:
 * it reads as undefined); undefined in an array, or as the body, is not (null).
 * In: 'item' for a batch answer's item, whose outcomes inside it are told to be the item.
 */
export type AsJson<T, In extends 'value' | 'item' = 'value'> =
  unknown extends T ? unknown // unknown and any: the handler reads it as it must
  : T extends string ? string : T extends number ? number : T extends boolean ? boolean : T extends null ? null
  : T extends undefined ? NotJson<'undefined arrives as null: type it null'>
  : T extends bigint ? NotJson<'a BigInt is refused (JSON has none): type it string, String(n)'>
  : T extends symbol ? NotJson<'a symbol is dropped'>
  : T extends (...args: never) => unknown ? NotJson<'a function (a method) is dropped: type it as data only'>
  : T extends Date ? NotJson<'a Date arrives as its ISO string: type it string, date.toISOString()'>
  : T extends { toJSON(...args: never): unknown } ? NotJson<'this arrives as what its toJSON() returns: type it so'>
  // A bytea column's Uint8Array (a Buffer has toJSON, above): else told by its methods, as a class instance.
  : T extends ArrayBuffer | ArrayBufferView
    ? NotJson<'a typed array or ArrayBuffer arrives as an object of its bytes by index ({} for an ArrayBuffer): type it string (base64) or number[]'>
  // Thrown to steer a job; as data JSON keeps its name only (a result holding one fails its job).
  : T extends { readonly [OUTCOME_TYPE]: string }
    ? NotJson<OutcomeWhy<In>>
  // Not Error: its type is { name, message }, as plain data of those fields is.
  : T extends ReadonlyMap<unknown, unknown> | ReadonlySet<unknown> | PromiseLike<unknown>
    ? NotJson<'a Map, Set or Promise is refused (JSON writes it as {}): type it as plain data'>
  // An array (or an interface extending one, as Prisma's JsonArray) by its element: written
  // as E[], which TS resolves lazily, so a recursive JSON type (Json = … | Json[]) is no
  // endless instantiation. A tuple is mapped element by element.
  : T extends readonly unknown[] ? number extends T['length']
    ? T extends unknown[] ? AsJson<T[number], In>[] : readonly AsJson<T[number], In>[]
    : { [K in keyof T]: AsJson<T[K], In> }
  // A symbol key is not refused, though JSON drops it: a type-level brand is one (zod's .brand(), type-fest's Tagged).
  : { [K in keyof T]: AsJsonField<T[K], In> };

/** A property's JSON form: one that may be undefined is dropped, read back as undefined. */
type AsJsonField<V, In extends 'value' | 'item'> = undefined extends V ? AsJson<Exclude<V, undefined>, In> | undefined : AsJson<V, In>;

/**
 * What defineTask requires of a handler besides its signature: nothing when
 * Body is its own JSON form (AsJson), else a property no function has,
 * whose type says which part is not JSON. A function of your own that
 * passes a generic handler on to defineTask asks for it too:
 * `<B>(handler: Handler<B> & JsonBody<B>) => defineTask(name, handler)`.
 */
export type JsonBody<Body> = [Body] extends [AsJson<Body>] ? unknown
  : { 'pgdrain: the body type is not its JSON form': NotJsonParts<Body, 'body'>; 'its JSON form': AsJson<Body> };

/**
 * What defineTask requires of a handler for its result type, as JsonBody for
 * its body: the result is stored as JSON (jobs.job.result, read back by
 * waitFor and getJob), so nothing when Result is its own JSON form, else a
 * property naming the part. Returning nothing (undefined, void) is fine: stored as null.
 * A generic wrapper of defineTask whose result type is generic asks for it too:
 * `<B, R>(handler: Handler<B, R> & JsonBody<B> & JsonResult<R>) => …`.
 * In: 'item' for a batch answer's items (its Errors left out by the caller).
 */
export type JsonResult<Result, In extends 'value' | 'item' = 'value'> =
  [Result] extends [AsJson<Exclude<Result, undefined | void>, In> | undefined | void] ? unknown
  : { 'pgdrain: the result type is not its JSON form': NotJsonParts<Exclude<Result, undefined | void>, 'result', In>;
      'its JSON form': AsJson<Exclude<Result, undefined | void>, In> };

/**
 * The parts of a refused type that are not JSON (AsJson makes them NotJson),
 * as `path: why` strings (`body.items[number].at: a Date arrives …`), first
 * in the error type: tsc cuts a long type in its message (`{ ...; }`,
 * `... 21 more ...`) but prints a string literal whole. It walks only into
 * the parts that fail, up to 5 levels deep, so a recursive type ends: a part
 * deeper is told by its path. Only a refused type pays for it.
 */
type NotJsonParts<T, Path extends string, In extends 'value' | 'item' = 'value', Depth extends 0[] = []> = T extends unknown
  ? [T] extends [AsJson<T, In>] ? never
  : AsJson<T, In> extends NotJson<infer Why> ? `${Path}: ${Why}`
  : Depth['length'] extends 5 ? `${Path}: a part deeper in it (see 'its JSON form')`
  : T extends readonly unknown[] ? number extends T['length'] ? NotJsonParts<T[number], `${Path}[number]`, In, [...Depth, 0]>
    : { [K in keyof T & `${number}`]-?: NotJsonParts<T[K], `${Path}[${K}]`, In, [...Depth, 0]> }[keyof T & `${number}`]
  // A property that may be undefined is fine (AsJsonField).
  : { [K in keyof T]-?: NotJsonParts<Exclude<T[K], undefined>, K extends string | number ? `${Path}.${K}` : `${Path}[symbol]`,
                                     In, [...Depth, 0]> }[keyof T]
  : never;
