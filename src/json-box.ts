// A Number, String, Boolean or BigInt object as JSON.stringify writes it: by
// its internal slot ([[NumberData]] …), not its prototype or
// Symbol.toStringTag, told without a throw for what is plainly no box.

/** What unboxed answers for an object that is no Number, String, Boolean or BigInt object. */
export const NOT_BOXED: unique symbol = Symbol('not boxed');

/** The valueOf that tells each box by its slot (throws on any other object), by the tag it would have. */
const NUMBER = Number.prototype.valueOf;
const STRING = String.prototype.valueOf;
const BOOLEAN = Boolean.prototype.valueOf;
const BIGINT = BigInt.prototype.valueOf;
const UNBOX: Record<string, (this: unknown) => unknown> = {
  '[object Number]': NUMBER,
  '[object String]': STRING,
  '[object Boolean]': BOOLEAN,
  '[object BigInt]': BIGINT,
};

/**
 * A Number, String, Boolean or BigInt object (new Number(3), Object(1n)), of
 * any realm, as JSON.stringify writes it: a Number or String converted as
 * Number(it) and String(it) are (its valueOf or toString, if it has its own;
 * a TypeError with neither), a Boolean or BigInt its primitive; never its
 * own fields. NOT_BOXED else. tag: value's Object.prototype.toString, read
 * once by the caller; proto: its prototype. Tried, each by its slot: the
 * valueOf tag names, then that of the box proto inherits from (a Number with
 * a Symbol.toStringTag of its own). Not told: a box whose prototype and tag
 * both lie, a BigInt object given a plain prototype (written {} where
 * JSON.stringify throws), a box given a plain prototype and fields of its
 * own, first not '0' (json-loss.ts reads a plain object's tag only without
 * them: a Proxy's trap): telling those would throw for every object.
 */
export function unboxed(value: object, tag: string, proto: object | null): unknown {
  const byTag = UNBOX[tag];
  if (byTag !== undefined && holds(value, byTag)) return converted(value, byTag);
  const byProto = proto === null || proto === Object.prototype ? undefined : boxOf(proto);
  if (byProto !== undefined && byProto !== byTag && holds(value, byProto)) return converted(value, byProto);
  return NOT_BOXED;
}

/** The valueOf of the box proto is or inherits from (of this realm), or undefined: its chain walked once, to Object.prototype. */
function boxOf(proto: object): ((this: unknown) => unknown) | undefined {
  for (let at: object | null = proto; at !== null && at !== Object.prototype; at = Object.getPrototypeOf(at) as object | null) {
    if (at === Number.prototype) return NUMBER;
    if (at === String.prototype) return STRING;
    if (at === Boolean.prototype) return BOOLEAN;
    if (at === BigInt.prototype) return BIGINT;
  }
  return undefined;
}

/** Whether value has the slot unbox reads: its brand check throws on any other object, runs none of its code. */
function holds(value: object, unbox: (this: unknown) => unknown): boolean {
  try {
    unbox.call(value);
    return true;
  } catch {
    return false;
  }
}

/** A box's primitive as JSON.stringify takes it: ToNumber or ToString of a Number or String object (its own valueOf or toString), a TypeError with none. */
function converted(value: object, unbox: (this: unknown) => unknown): unknown {
  return unbox === NUMBER ? Number(value) : unbox === STRING ? String(value) : unbox.call(value);
}
