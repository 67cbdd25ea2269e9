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
