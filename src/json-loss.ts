// What JSON.stringify would lose of a value, looked for as it meets each
// value (after its toJSON): one rule for a handler's result (result-json.ts)
// and for what pgdrain sends as jsonb (a body, a result given to complete:
// json-text.ts jsonParam). jsonForm checks a value and gives what to
// serialise, each toJSON called once over both.
import { cutPath, keyPath } from './json-path.js';
import { lostKind, lostText } from './json-lost.js';
import { boxed, copyWith, Formed, type Kept, NOTHING, NotPlain, plainForm, ROOT, take, Threw } from './json-plain.js';

/** Whose value it is, for the advice: a handler's result, a batch answer's item, or a value given to a call. */
export type JsonUse = 'result' | 'item' | 'value';

/**
 * What jsonForm found: the first part lost and the first Promise (retry), as
 * texts; notJson when JSON.stringify would throw, with thrown when a toJSON
 * or getter threw (the error to throw in its place). form: what to give
 * JSON.stringify for the value's text, each toJSON's result in its place (so
 * it calls none), when notJson is not set or is a BigInt; undefined else (the value).
 */
export interface Losses { first?: string; retry?: string; notJson?: true; thrown?: { error: unknown }; form?: unknown }

/**
 * A value's JSON text's source, checked (lossesOf's rule): plainForm's form
 * when it vouches for the value, else lossesOf's, given what plainForm found
 * (NotPlain's kept). Each toJSON is called once per place JSON.stringify meets
 * it, as JSON.stringify alone calls it, and the form has their answers in
 * place: JSON.stringify of it calls none.
 */
export function jsonForm(value: unknown, root: string, use: JsonUse): Losses {
  const form = plainForm(value);
  return form instanceof NotPlain ? lossesOf(value, root, use, form.kept) : { form };
}

/** Where a value is: its key under its holder (null for the root), built into a path only for a message. */
interface At { up: At | null; key: string; index: boolean }

function pathOf(at: At | null, root: string): string {
  const keys: At[] = [];
  for (let a = at; a !== null && a.up !== null; a = a.up) keys.push(a);
  let path = root;
  for (let i = keys.length - 1; i >= 0; i--) path = keys[i]!.index ? `${path}[${keys[i]!.key}]` : keyPath(path, keys[i]!.key);
  return path;
}

/**
 * An object the walk is in: the forms of its values that differ from what
 * it holds (a toJSON's result in place), and whether it is to be copied
 * anyway (a toJSON's result with a toJSON of its own, which JSON does not call).
 */
interface Open { changed: [string, unknown][] | undefined; copy: boolean }

/**
 * A step of the walk: a value held at `at` by holder, its form to go to
 * parent; with node and open, the walk leaving node (held's form, after its toJSON).
 */
interface Step { held: unknown; at: At; holder: object; parent: Open; called?: boolean; node?: object; open?: Open }

/**
 * What JSON would lose of a value (lostKind), walked as JSON.stringify walks
 * it: each value's toJSON called with its key (or what plainForm found
 * there taken from earlier), arrays by index, objects by own enumerable
 * keys. The first part lost and the first Promise, said at their path under root; every native
 * Promise met gets a no-op catch (one left rejecting unhandled would end the
 * process, with the drain's jobs leased). A BigInt or a cycle is notJson
 * (JSON.stringify says what); a toJSON or getter that throws ends the walk as
 * notJson too, its error in thrown. The form (Losses) is built as it goes:
 * the objects holding a toJSON's result copied, the rest shared. Iterative:
 * any depth JSON.stringify writes, none of the stack.
 */
function lossesOf(value: unknown, root: string, use: JsonUse, earlier: Kept): Losses {
  const found: Losses = {};
  const onPath = new Set<object>(); // the objects from the root to here: one met again is a cycle
  const top: Open = { changed: undefined, copy: false };
  const stack: Step[] = [{ held: value, at: { up: null, key: '', index: false }, holder: ROOT, parent: top }];
  /** The form, of the steps left: the objects being left finished, the values not yet met as they are. */
  const form = (): unknown => {
    while (stack.length > 0) {
      const { held, at, parent, called, node, open } = stack.pop()!;
      if (open === undefined) continue;
      const formed = formOf(node!, open);
      if (formed !== held || called === true) (parent.changed ??= []).push([at.key, formed]);
    }
    return top.changed === undefined ? value : top.changed[0]![1];
  };
  try {
    while (stack.length > 0) {
      const step = stack.pop()!;
      const { held, at, holder, parent } = step;
      if (step.open !== undefined) {
        onPath.delete(step.node!);
        const formed = formOf(step.node!, step.open);
        if (formed !== held || step.called === true) (parent.changed ??= []).push([at.key, formed]);
        continue;
      }
      let node = held;
      let called = false;
      const before = earlier.size === 0 ? NOTHING : take(earlier, holder, at.key);
      if (before instanceof Formed) { // a plain form plainForm finished: nothing lost in it
        (parent.changed ??= []).push([at.key, before.form]);
        continue;
      }
      if (before instanceof Threw) throw before.error;
      if (before !== NOTHING) {
        node = before; // what its toJSON answered plainForm
        called = true;
      } else if ((typeof node === 'object' && node !== null) || typeof node === 'function' || typeof node === 'bigint') {
        const toJSON = (node as { toJSON?: unknown }).toJSON;
        if (typeof toJSON === 'function') {
          node = toJSON.call(node, at.key) as unknown;
          called = true;
        }
      }
      if (typeof node !== 'object' || node === null || boxed(node)) { // a Number object: JSON writes its primitive
        if (called) (parent.changed ??= []).push([at.key, node]);
        if (typeof node === 'bigint') return { ...found, notJson: true, form: form() }; // JSON.stringify of it says the BigInt's error
        continue;
      }
      if (onPath.has(node)) return { ...found, notJson: true };
      const kind = lostKind(node);
      if (kind !== undefined) {
        const text = lostText(kind, node, cutPath(pathOf(at, root)), use, at.up === null);
        found.first ??= text;
        if (kind === 'promise') found.retry ??= text;
      }
      onPath.add(node);
      const open: Open = { changed: undefined, copy: called && typeof (node as { toJSON?: unknown }).toJSON === 'function' };
      stack.push({ held, at, holder, parent, called, node, open });
      if (Array.isArray(node)) {
        for (let i = node.length - 1; i >= 0; i--) stack.push({ held: (node as unknown[])[i], at: { up: at, key: String(i), index: true }, holder: node, parent: open });
      } else {
        const keys = Object.keys(node);
        for (let i = keys.length - 1; i >= 0; i--) {
          stack.push({ held: (node as Record<string, unknown>)[keys[i]!], at: { up: at, key: keys[i]!, index: false }, holder: node, parent: open });
        }
      }
    }
    return { ...found, form: form() }; // a getter read again by a copy may throw too
  } catch (error) {
    return { ...found, notJson: true, thrown: { error } };
  }
}

/** An object's form: itself, or a copy with its changed values in place (an array as a plain array, as JSON writes it). */
function formOf(node: object, open: Open): unknown {
  if (open.changed === undefined && !open.copy) return node;
  if (Array.isArray(node)) {
    const array = node as unknown[];
    const copy = Array.from({ length: array.length }, (_, j) => array[j]);
    for (const [k, form] of open.changed ?? []) copy[Number(k)] = form;
    return copy;
  }
  return copyWith(node, open.changed ?? []);
}
