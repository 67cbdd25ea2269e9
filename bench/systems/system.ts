// The shape every queue under test takes in the throughput rounds.

/** One queue implementation, set up in the bench database. */
export interface System {
  readonly name: string;
  /** Empties its tables (not timed). */
  reset(): Promise<void>;
  /** Enqueues n no-op jobs in chunks of ENQUEUE_CHUNK, one statement per chunk (timed). */
  enqueue(n: number): Promise<void>;
  /** Runs until all n jobs have ended and that is committed (timed). */
  drain(n: number): Promise<void>;
  /** Throws unless all n jobs ended as successes (not timed). */
  verify(n: number): Promise<void>;
  close(): Promise<void>;
}

/** Jobs per enqueue statement, the same for every system. */
export const ENQUEUE_CHUNK = 10_000;
/** Jobs claimed per statement by the drainers that take a batch size. */
export const BATCH = 500;
/** Parallel drainers (pgdrain drains, floor loops, pg-boss workers). */
export const DRAINERS = 4;

/** [from, to) ranges of at most ENQUEUE_CHUNK covering 0..n. */
export function chunks(n: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let from = 0; from < n; from += ENQUEUE_CHUNK) out.push([from, Math.min(n, from + ENQUEUE_CHUNK)]);
  return out;
}

/** Polls `done()` every few milliseconds until it answers true. */
export async function until(done: () => Promise<boolean>, everyMs = 5): Promise<void> {
  while (!(await done())) await new Promise((r) => setTimeout(r, everyMs));
}

export function expectCount(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`${what}: expected ${want}, found ${got}`);
}
