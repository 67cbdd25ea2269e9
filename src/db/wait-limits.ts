// What ends one waitFor early: its signal, and its timeout.
import { PgDrainError } from '../errors.js';
import { timerAt } from '../timeouts.js';

/** How long past its timeout waitFor's last look at the job may take (a silent server: then it gives up). */
const LAST_CHECK_MS = 2000;

export interface WaitLimits {
  /**
   * Rejects on the signal, and LAST_CHECK_MS after the timeout (the last
   * look did not answer): it bounds everything the wait does, the connection
   * and each check too (a server that stops answering, a lock the check waits on).
   */
  stop: Promise<never>;
  /** Whether the timeout passed: the next check is the last look. */
  timedOut(): boolean;
  /** The error of a job the last look found still active. */
  stillActive(): PgDrainError;
  /** Cancels the timers and leaves the signal (one signal may serve many waits). */
  release(): void;
}

/**
 * The limits of waitFor(id) with `options`. At the timeout `lastLook` is
 * called (it wakes the wait, which asks the job once more before it gives
 * up): a session that hears no NOTIFY (LISTEN through PgBouncer in
 * transaction mode, whose server connection goes back to its pool) still
 * gets the outcome of a job that ended meanwhile, not "still active".
 */
export function waitLimits(id: string, options: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined },
                           lastLook: () => void): WaitLimits {
  let timedOut = false;
  let cancelTimer = () => {};
  let cancelLastCheck = () => {};
  let abort = () => {};
  const stillActive = () => new PgDrainError('timed_out', `waitFor(${id}): job still active after ${options.timeoutMs} ms`,
                                             { field: 'timeoutMs' });
  const stop = new Promise<never>((_, reject) => {
    abort = () => reject(new PgDrainError('invalid_argument', `waitFor(${id}) aborted`, { cause: options.signal?.reason }));
    if (options.signal?.aborted) abort();
    options.signal?.addEventListener('abort', abort, { once: true });
    if (options.timeoutMs !== undefined) {
      // timerAt: setTimeout fires at once for a delay past 24.8 days.
      const at = Date.now() + options.timeoutMs;
      cancelTimer = timerAt(at, () => {
        timedOut = true;
        lastLook();
      });
      cancelLastCheck = timerAt(at + LAST_CHECK_MS, () => reject(stillActive()));
    }
  });
  stop.catch(() => {});
  return {
    stop,
    timedOut: () => timedOut,
    stillActive,
    release() {
      cancelTimer();
      cancelLastCheck();
      options.signal?.removeEventListener('abort', abort);
    },
  };
}
