// What JSON would lose of one object it writes (after its toJSON), and how
// that is said at its path: the parts of json-loss.ts's rule that look at
// one object, not the walk.
import { outcomeClassOf } from './job-errors.js';
import type { JsonUse } from './json-loss.js';
import { cutPath } from './json-path.js';

export type LostKind = 'map' | 'set' | 'promise' | 'error' | 'outcome';

/**
 * What JSON would lose of an object it writes (after its toJSON), or
 * undefined: the entries of a Map or Set not empty, a Promise (a native
 * one gets a no-op catch; 'thenable' for any other: a Promise if it has no
 * data but functions, which the walk tells from the values it reads), the
 * message and stack of an Error with no own fields but its name (one with
 * others is stored as those, as any class instance), a FailJob, RetryJob or
 * SnoozeJob whatever its fields; proto is node's prototype and tag its
 * Object.prototype.toString, as read (once: a Proxy's traps). Its then is
 * read here once (read), and taken by the walk if it is an own key: a getter
 * runs once. What cannot be read (a Proxy of a Map: its size throws) is
 * undefined, stored as JSON writes it.
 */
export function lostKind(node: object, proto: object | null, tag: string, read: ThenRead): LostKind | 'thenable' | undefined {
  try {
    return lostKindOf(node, proto, tag, read);
  } catch {
    return undefined;
  }
}

/** node's then as lostKind read it (read: false when it did not), for the walk to take, not read again. */
export interface ThenRead { read: boolean; then: unknown }

function lostKindOf(node: object, proto: object | null, tag: string, read: ThenRead): LostKind | 'thenable' | undefined {
  read.read = false;
  if (Array.isArray(node)) return undefined;
  if (inherits(proto, Map.prototype)) return (node as Map<unknown, unknown>).size > 0 ? 'map' : undefined;
  if (inherits(proto, Set.prototype)) return (node as Set<unknown>).size > 0 ? 'set' : undefined;
  read.then = (node as { then?: unknown }).then;
  read.read = true;
  if (typeof read.then === 'function') {
    if (tag === '[object Promise]') {
      Promise.prototype.then.call(node, undefined, ignore);
      return 'promise';
    }
    // Lost ('promise') only with no data of its own ({ when, then } is written with it): told by
    // json-loss.ts from the values its walk reads, not read here a second time.
    return 'thenable';
  }
  // An Error of this realm or another (node:vm), as error-text.ts isError tells it.
  if (!inherits(proto, Error.prototype) && tag !== '[object Error]') return undefined;
  if (outcomeClassOf(node) !== undefined) return 'outcome';
  return Object.keys(node).every((key) => key === 'name') ? 'error' : undefined;
}

const ignore = () => {};

/**
 * node instanceof C, told from node's prototype as the walk read it: a
 * Proxy's getPrototypeOf trap is not run again for each class asked about.
 */
function inherits(proto: object | null, prototype: object): boolean {
  return proto === prototype || (proto !== null && Object.prototype.isPrototypeOf.call(prototype, proto));
}

/** What one lost part is, said at its path: `result.a is a Promise: await it (JSON would store it as {})`. */
export function lostText(kind: LostKind, node: object, path: string, use: JsonUse, root: boolean): string {
  const stored = () => { // the keys JSON writes: not those of undefined, a function or a symbol
    const keys = Object.keys(node).filter((key) => !/^(?:undefined|function|symbol)$/.test(typeof (node as Record<string, unknown>)[key]));
    return keys.length === 0 ? 'it as {}' : `only its own fields (${cutPath(keys.join(', '))})`;
  };
  switch (kind) {
    case 'promise': return `${path} is a Promise: await it (JSON would store it as {})`;
    case 'map': return `${path} is a Map: store Object.fromEntries(it) or [...it] (JSON would store ${stored()})`;
    case 'set': return `${path} is a Set: store [...it] (JSON would store ${stored()})`;
    case 'outcome': return `${path} is a ${outcomeClassOf(node)}${said(node)}: ${outcomeAdvice(use)} (JSON would store ${stored()})`;
    case 'error': return `${path} is an Error${said(node)}: JSON keeps neither its message nor its stack; `
      + `${use === 'result' && root ? 'throw it, do not return it, or return its message' : 'store its message'}`
      + ` (JSON would store ${stored()})`;
  }
}

/** What to do with a FailJob, RetryJob or SnoozeJob found where a result is: a batch answer takes it as a job's item. */
function outcomeAdvice(use: JsonUse): string {
  switch (use) {
    case 'result': return 'throw it, do not return it';
    case 'item': return "answer it as the job's item, not inside its result (an Error item settles its job as if thrown)";
    case 'value': return 'JSON keeps neither its message nor its stack; store its message';
  }
}

/** An Error's message for a lost part's text, its head past 200 characters: ` ("smtp 550")`, or '' for none. */
function said(node: object): string {
  const message: unknown = (node as Error).message;
  if (typeof message !== 'string' || message === '') return '';
  return ` (${JSON.stringify(message.length > 200 ? `${message.slice(0, 200)}…` : message)})`;
}
