import type { Handler, TaskMap } from './types.js';

/**
 * Finds the handler for a dotted task name in a module's exports: a flat key
 * (`'math.sum'`) first, then a path through nested objects (`math` → `sum`),
 * then a task defined under another name (`export const send =
 * defineTask('email.send', …)` serves `email.send`). A module whose tasks
 * are all in its default export (`export default { … }`, or CommonJS
 * `module.exports`) is looked up there too. Returns undefined when nothing
 * callable is there.
 */
export function resolveHandler(tasks: TaskMap, name: string): Handler | undefined {
  return byPath(tasks, name) ?? definedTasks(tasks).get(name) ?? inDefault(tasks, (d) => resolveHandler(d, name));
}

/** Every task name a tasks module serves, for listings and checks. */
export function taskNames(tasks: TaskMap): string[] {
  const names = new Set([...pathNames(tasks, ''), ...definedTasks(tasks).keys(), ...(inDefault(tasks, taskNames) ?? [])]);
  return [...names].sort();
}

function byPath(tasks: TaskMap, name: string): Handler | undefined {
  const flat = own(tasks, name);
  if (typeof flat === 'function') return flat as Handler;
  let node: unknown = tasks;
  for (const part of name.split('.')) {
    node = typeof node === 'object' && node !== null ? own(node as Record<string, unknown>, part) : undefined;
    if (node === undefined) return undefined;
  }
  return typeof node === 'function' ? (node as Handler) : undefined;
}

function pathNames(tasks: TaskMap, prefix: string, seen = new Set<object>([tasks])): string[] {
  const names: string[] = [];
  for (const [key, value] of Object.entries(tasks)) {
    if (key === 'default') continue;
    const name = prefix ? `${prefix}.${key}` : key;
    if (typeof value === 'function') names.push(name);
    else if (isNamespace(value, seen)) names.push(...pathNames(value, name, seen));
  }
  return names;
}

/**
 * Tasks made by defineTask (a function carrying its own `task` name), at any
 * depth of the exports but the default export's, by that name; the first
 * found wins. Read on a lookup that missed by path, and for listings.
 */
function definedTasks(tasks: TaskMap, found = new Map<string, Handler>(), seen = new Set<object>([tasks]),
                      top = true): Map<string, Handler> {
  for (const [key, value] of Object.entries(tasks)) {
    if (key === 'default' && top) continue;
    if (typeof value === 'function') {
      const task = (value as { task?: unknown }).task;
      if (typeof task === 'string' && !found.has(task)) found.set(task, value as Handler);
    } else if (isNamespace(value, seen)) {
      definedTasks(value, found, seen, false);
    }
  }
  return found;
}

/**
 * Whether to look for tasks inside value: a plain object or a module
 * namespace not seen yet. Never an instance (a pool, a client an export
 * holds), whose internals are no tasks and may be large or cyclic.
 */
function isNamespace(value: unknown, seen: Set<object>): value is TaskMap {
  if (typeof value !== 'object' || value === null || seen.has(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== null && proto !== Object.prototype) return false;
  seen.add(value);
  return true;
}

/** fn of the default export, when it is an object (export default { … }, CommonJS). */
function inDefault<T>(tasks: TaskMap, fn: (d: TaskMap) => T): T | undefined {
  const d = own(tasks, 'default');
  return typeof d === 'object' && d !== null && d !== tasks ? fn(d as TaskMap) : undefined;
}

// Own properties only: a task name must never reach Object.prototype or a
// module namespace's internals.
function own(obj: Record<string, unknown>, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
}
