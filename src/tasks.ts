import type { Handler, TaskMap } from './types.js';

/**
 * Finds the handler for a dotted task name in a module's exports: a flat key
 * (`'math.sum'`) first, then a path through nested objects (`math` → `sum`).
 * Returns undefined when nothing callable is there.
 */
export function resolveHandler(tasks: TaskMap, name: string): Handler | undefined {
  const flat = own(tasks, name);
  if (typeof flat === 'function') return flat as Handler;
  let node: unknown = tasks;
  for (const part of name.split('.')) {
    node = typeof node === 'object' && node !== null ? own(node as Record<string, unknown>, part) : undefined;
    if (node === undefined) return undefined;
  }
  return typeof node === 'function' ? (node as Handler) : undefined;
}

// Own properties only: a task name must never reach Object.prototype or a
// module namespace's internals.
function own(obj: Record<string, unknown>, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
}

/** Every dotted name a tasks module serves, for listings and checks. */
export function taskNames(tasks: TaskMap, prefix = ''): string[] {
  const names: string[] = [];
  for (const [key, value] of Object.entries(tasks)) {
    if (key === 'default') continue;
    const name = prefix ? `${prefix}.${key}` : key;
    if (typeof value === 'function') names.push(name);
    else if (typeof value === 'object' && value !== null) names.push(...taskNames(value as TaskMap, name));
  }
  return names.sort();
}
