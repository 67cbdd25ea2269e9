// The channels pgdrain NOTIFYs on, and what a notification on each means.

/** A NOTIFY pgdrain sends: queued (payload: queue name), picked and completed (payload: job ids). */
export interface QueueEvent {
  event: 'queued' | 'picked' | 'completed';
  /** Job ids (picked, completed). */
  ids: string[];
  /**
   * The queue (queued). '*' after a redrive of several queues, and when a
   * lost LISTEN session is back: what was published meanwhile was not heard.
   */
  queue?: string;
}

/** Each channel, and the event a notification on it is. */
export const CHANNELS = { pgdrain_queued: 'queued', pgdrain_picked: 'picked', pgdrain_completed: 'completed' } as const;

export type Channel = keyof typeof CHANNELS;

/** The event a notification is (undefined: not on one of CHANNELS). */
export function queueEvent(channel: string, payload: string): QueueEvent | undefined {
  const event = CHANNELS[channel as Channel];
  if (!event) return undefined;
  return event === 'queued' ? { event, ids: [], queue: payload } : { event, ids: payload.split(',') };
}
