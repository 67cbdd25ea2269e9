// The pause a drain's Settler takes between two failed settle tries (settler.ts close): cut short once the drain's
// round trips are given up (round-trip-limit.ts), so its last settle never outlasts that limit.

/** Waits ms; answers false when it was cut short (the drain's round trips were given up). */
export type Pause = (ms: number) => Promise<boolean>;

/** Pauses cut short once `signal` aborts: a drain passes its round-trip limit's (RoundTripLimit.signal). */
export function pauseUntil(signal?: AbortSignal): Pause {
  return (ms) => new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const end = (waited: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', cut);
      resolve(waited);
    };
    const cut = () => end(false);
    const timer = setTimeout(() => end(true), ms);
    signal?.addEventListener('abort', cut, { once: true });
  });
}
