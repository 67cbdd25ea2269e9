/**
 * Job timeouts with one timer per distinct end time rather than one per job:
 * a batch's jobs share their claim time and mostly their timeout, so a batch
 * of 500 costs one timer, not 500 (a measurable share of a fast drain's CPU).
 */
export class Timeouts {
  private readonly groups = new Map<number, { timer: ReturnType<typeof setTimeout>; due: Set<() => void> }>();

  /** Calls onExpire at `end` (epoch ms) unless clear(end, onExpire) comes first. */
  at(end: number, onExpire: () => void): void {
    let group = this.groups.get(end);
    if (!group) {
      const due = new Set<() => void>();
      const timer = setTimeout(() => {
        this.groups.delete(end);
        for (const fire of due) fire();
      }, Math.max(0, end - Date.now()));
      group = { timer, due };
      this.groups.set(end, group);
    }
    group.due.add(onExpire);
  }

  clear(end: number, onExpire: () => void): void {
    const group = this.groups.get(end);
    if (!group?.due.delete(onExpire) || group.due.size > 0) return;
    clearTimeout(group.timer);
    this.groups.delete(end);
  }
}

/** setTimeout's longest delay: a longer one fires at once, with a warning. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/** Calls fn at `at` (epoch ms), even past setTimeout's 24.8-day range; returns what cancels it. */
export function timerAt(at: number, fn: () => void): () => void {
  let timer: ReturnType<typeof setTimeout>;
  const arm = () => {
    const delay = at - Date.now();
    timer = delay > MAX_DELAY_MS ? setTimeout(arm, MAX_DELAY_MS) : setTimeout(fn, Math.max(0, delay));
  };
  arm();
  return () => clearTimeout(timer);
}
