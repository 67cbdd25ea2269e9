import type { Running } from './wind-down.js';

/**
 * The jobs a drain runs, by id: a Map, replaced by a new one each time it
 * empties (each claim of fast jobs fills and empties it).
 *
 * V8 links each table a Map outgrows or shrinks out of to the table that
 * follows it (for iterators still walking the old one), and the old table
 * keeps the entries it held. A drain's Map lives long, so one of its tables
 * is promoted to the old generation sooner or later; from then on that dead
 * table keeps every later table, and the jobs in them, alive through each
 * scavenge, which copies them and then promotes them for a full collection
 * to free: most of what a drain allocates per job, copied twice. A new Map
 * per fill starts no such chain from an old table.
 */
export class RunningJobs {
  private map = new Map<string, Running>();

  get size(): number {
    return this.map.size;
  }

  get(id: string): Running | undefined {
    return this.map.get(id);
  }

  set(id: string, entry: Running): void {
    this.map.set(id, entry);
  }

  delete(id: string): void {
    if (this.map.delete(id) && this.map.size === 0) this.map = new Map();
  }

  values(): IterableIterator<Running> {
    return this.map.values();
  }
}
