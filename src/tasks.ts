import type { Handler, TaskMap } from './types.js';

/**
 * Finds the handler for a dotted task name in a module's exports: a flat key
 * (`'math.sum'`) first, then a path through nested objects (`math` → `sum`),
 * then a task defined under another name (`export const send =
 * defineTask('email.send', …)` serves `email.send`). A module whose tasks
 * are all in its default export (`export default { … }`, or CommonJS
 * `module.exports`) is looked up there too. Returns undefined when nothing
 * callable is there. Walks the exports for defined names on each call that
 * misses by path: a drain looks up through one TaskLookup instead.
 */
export function resolveHandler(tasks: TaskMap, name: string): Handler | undefined {
  return new TaskLookup(tasks).resolve(name);
}

/**
 * resolveHandler for the jobs of one drain: the exports are walked for
 * defined names once (per object looked in: the module, its default export),
 * not for each job. Each use of a defined name reads it again where the walk
 * found it (one property read per level), so a task replaced there (a live
 * binding reassigned) serves its next job; one gone from there, or a name
 * not found at all (a task added since, an unknown task), walks again. The
 * one difference from a walk per job: of two exports defining one name, the
 * one found first keeps serving it while it still does. A name found by its
 * path never reaches the walk: a drain of such tasks pays nothing for it.
 */
export class TaskLookup {
  private indexes = new WeakMap<object, Map<string, Defined>>();
  private walked = false;

  constructor(private readonly tasks: TaskMap) {}

  resolve(name: string): Handler | undefined {
    const walkedBefore = this.walked;
    const found = this.find(this.tasks, name);
    if (found !== undefined || !walkedBefore) return found;
    this.indexes = new WeakMap(); // a miss on an earlier walk: the exports may have gained the task since
    return this.find(this.tasks, name);
  }

  private find(tasks: TaskMap, name: string): Handler | undefined {
    return byPath(tasks, name) ?? this.defined(tasks, name) ?? inDefault(tasks, (d) => this.find(d, name));
  }

  private defined(tasks: TaskMap, name: string): Handler | undefined {
    const index = this.indexes.get(tasks);
    const at = index?.get(name);
    if (at !== undefined) {
      const now = stillAt(tasks, at, name);
      if (now !== undefined) return now;
    } else if (index !== undefined) {
      return undefined;
    }
    const fresh = definedTasks(tasks);
    this.indexes.set(tasks, fresh);
    this.walked = true;
    return fresh.get(name)?.handler;
  }
}

/** Every task name a tasks module serves, for listings and checks. */
export function taskNames(tasks: TaskMap): string[] {
  const names = new Set([...pathNames(tasks, ''), ...definedTasks(tasks).keys(), ...(inDefault(tasks, taskNames) ?? [])]);
  return [...names].sort();
}

/**
 * Every handler a lookup can resolve to, for a check made once before a
 * drain claims (hasTransactionalTask): what taskNames lists, and also what
 * a path reaches through class instances' own properties (`{ mail: new
 * MailTasks() }`, an instance an instance holds) and arrays, as
 * resolveHandler reads them. Typed arrays are passed over (no task is
 * there), and the walk stops after MAX_WALK own properties, so an export
 * holding a large graph (a client's internals) costs a drain's start little.
 * An export that throws when read is passed over: its jobs fail when they
 * run. Prototype methods are not here, as resolveHandler serves own
 * properties only.
 */
export function reachableHandlers(tasks: TaskMap): Set<Handler> {
  const found = new Set<Handler>();
  const seen = new Set<object>([tasks]);
  const queue: object[] = [tasks]; // breadth first: the shallow tasks are found before the budget runs out
  let budget = MAX_WALK;
  try {
    for (let i = 0; i < queue.length && budget > 0; i++) {
      for (const [, value] of entries(queue[i]!)) {
        if (--budget < 0) break;
        if (typeof value === 'function') found.add(value as Handler);
        else if (typeof value === 'object' && value !== null && !seen.has(value) && !ArrayBuffer.isView(value)) {
          seen.add(value);
          queue.push(value);
        }
      }
    }
  } catch {
    // a revoked Proxy: its lookups fail, and so does each of its jobs
  }
  return found;
}

/** How many own properties reachableHandlers reads at most. */
const MAX_WALK = 100_000;

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
  for (const [key, value] of entries(tasks)) {
    if (key === 'default') continue;
    const name = prefix ? `${prefix}.${key}` : key;
    if (typeof value === 'function') names.push(name);
    else if (isNamespace(value, seen)) names.push(...pathNames(value, name, seen));
  }
  return names;
}

/** A task found by its defined name: its handler, and the keys that lead to it. */
interface Defined {
  handler: Handler;
  path: string[];
}

/**
 * Tasks made by defineTask (a function carrying its own `task` name), at any
 * depth of the exports but the default export's, by that name; the first
 * found wins. Read on a lookup that missed by path, and for listings.
 */
function definedTasks(tasks: TaskMap, found = new Map<string, Defined>(), seen = new Set<object>([tasks]),
                      path: string[] = []): Map<string, Defined> {
  for (const [key, value] of entries(tasks)) {
    if (key === 'default' && path.length === 0) continue;
    try {
      if (typeof value === 'function') {
        const task = (value as { task?: unknown }).task;
        if (typeof task === 'string' && !found.has(task)) found.set(task, { handler: value as Handler, path: [...path, key] });
      } else if (isNamespace(value, seen)) {
        definedTasks(value, found, seen, [...path, key]);
      }
    } catch {
      // a Proxy that throws when read: passed over, as entries() passes over a getter that throws
    }
  }
  return found;
}

/**
 * The handler serving name where a walk found at, read there again (as the
 * walk reads it: own properties, through plain objects), if it still serves
 * name; undefined when it does not, or a read throws.
 */
function stillAt(tasks: TaskMap, at: Defined, name: string): Handler | undefined {
  try {
    let node: unknown = own(tasks, at.path[0]!);
    for (let i = 1; i < at.path.length; i++) {
      node = typeof node === 'object' && node !== null && isPlain(node) ? own(node as TaskMap, at.path[i]!) : undefined;
    }
    if (node === at.handler) return at.handler;
    if (typeof node !== 'function' || (node as { task?: unknown }).task !== name) return undefined;
    return at.handler = node as Handler; // replaced by another definition of the name: that one from now on
  } catch {
    return undefined;
  }
}

/**
 * Whether to look for tasks inside value: a plain object or a module
 * namespace not seen yet. Never an instance (a pool, a client an export
 * holds), whose internals are no tasks and may be large or cyclic.
 */
function isNamespace(value: unknown, seen: Set<object>): value is TaskMap {
  if (typeof value !== 'object' || value === null || seen.has(value) || !isPlain(value)) return false;
  seen.add(value);
  return true;
}

/** A plain object or a module namespace, not an instance. May throw (a revoked Proxy). */
function isPlain(value: object): boolean {
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === null || proto === Object.prototype;
}

/**
 * An object's own enumerable entries, less those whose read throws (a
 * getter, a Proxy): one broken export must not hide the others' tasks.
 */
function entries(obj: object): [string, unknown][] {
  try {
    return Object.entries(obj);
  } catch {
    const found: [string, unknown][] = [];
    let keys: string[];
    try {
      keys = Object.keys(obj);
    } catch {
      return found;
    }
    for (const key of keys) {
      try {
        found.push([key, (obj as Record<string, unknown>)[key]]);
      } catch {
        // passed over: a lookup of this very name meets the throw, and fails that job alone
      }
    }
    return found;
  }
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
