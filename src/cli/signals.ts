// Stopping a drain the way the kubelet stops a pod: SIGTERM, then SIGKILL
// once terminationGracePeriodSeconds has passed.
//
//   first SIGTERM          stop claiming; running handlers get the grace
//                          period to finish; what still runs then is stopped
//                          and nacked, its attempt spent: retried at once, or
//                          failed with no retries left (wind-down.ts
//                          interrupted; one still waiting for a connection
//                          is released, no attempt spent: the report's
//                          interrupted counts each); the report is printed, exit 0.
//   second SIGTERM, SIGINT stop every running job so now, print, exit 0.
//
// pypgqueue's three stop modes map onto this: "all" (SIGHUP: stop when no
// job waits) is what every drain does on its own (stoppedBy 'empty');
// "current" (SIGINT: stop once running jobs are done) is the first SIGTERM,
// bounded by the grace; "now" (SIGTERM: cancel running jobs) is the second
// SIGTERM or SIGINT, except that jobs are retried to run again elsewhere,
// not cancelled. SIGINT is the immediate one here because that is what
// Ctrl-C means in a terminal.

import { StopCause } from '../wind-down.js';

/** The two stop levels a drain listens to, fed by process signals. */
export interface StopSignals {
  /** Fires on the first SIGTERM: stop claiming, finish within the grace. */
  signal: AbortSignal;
  /** Fires on a second SIGTERM or any SIGINT: stop everything now (nacked, an attempt spent: retried at once, or failed with none left). */
  hardSignal: AbortSignal;
  /**
   * Fires on the second signal of either kind: what start-up still waits for
   * (the database a held signal asks within the grace) it waits for no more.
   */
  again: AbortSignal;
  /** The drain has returned or failed: further signals change nothing. */
  done(): void;
}

let stopped = false;
/** A command that listened for stops has ended (its report printed, or its error). */
let ended = false;
/** Signals held during a drain's or serve's start-up (holdEarlyStops), for listenForStop. */
let early: NodeJS.Signals[] | undefined;
const holdEarly = (name: NodeJS.Signals) => void early?.push(name);

/**
 * The CLI's first act for `pgdrain drain`, `serve` and `maintain` (bin.ts,
 * before anything heavy loads): a SIGTERM or SIGINT during start-up is kept
 * for listenForStop (listenForMaintainStop), which acts on it as on one
 * mid-drain (nothing claimed, the report, exit 0; serve shuts down once it
 * listens; maintain runs no pass), rather than Node's default killing the
 * process (exit 143) before the command listens. Other commands keep the
 * default: a SIGTERM ends them at once.
 */
export function holdEarlyStops(argv: readonly string[]): void {
  if (!['drain', 'serve', 'maintain'].includes(argv[2] ?? '') || early) return;
  early = [];
  process.on('SIGTERM', holdEarly).on('SIGINT', holdEarly);
}

/**
 * Listens for SIGTERM and SIGINT until the process ends; logs each on stderr.
 * `stopping` names what a signal does to this command, for the error of a job
 * stopped then (wind-down.ts StopCause): serve's "the server's shutdown" gives
 * `did not stop within graceMs=10000 after the server's shutdown (SIGTERM)`.
 */
export function listenForStop(graceSeconds: number, log: (line: string) => void, stopping: string): StopSignals {
  const cause = (name: string) => new StopCause(`${stopping} (${name})`);
  const soft = new AbortController();
  const hard = new AbortController();
  const again = new AbortController();
  let finished = false;
  let count = 0;
  const onSignal = (name: NodeJS.Signals) => {
    stopped = true;
    if (finished) return; // the drain has settled its jobs; the process is closing
    if (++count === 2) again.abort(new Error(name));
    if (name === 'SIGTERM' && !soft.signal.aborted) {
      log(`pgdrain: SIGTERM: claiming no more jobs; running ones have ${graceSeconds} s to finish ` +
          '(SIGTERM again or SIGINT stops them now: nacked, their attempt spent: retried, or failed with no retries left; '
          + 'those still waiting for a connection released, no attempt spent)');
      soft.abort(cause(name));
      return;
    }
    if (hard.signal.aborted) return;
    log(`pgdrain: ${name}: stopping every running job now (nacked, its attempt spent: retried, or failed with no retries left; `
        + 'one still waiting for a connection released, no attempt spent; the report counts each)');
    const second = soft.signal.aborted && name === 'SIGTERM';
    soft.abort(cause(name));
    hard.abort(cause(second ? 'a second SIGTERM' : name));
  };
  listenInPlaceOfEarly(onSignal);
  return {
    signal: soft.signal,
    hardSignal: hard.signal,
    again: again.signal,
    done: () => void (finished = ended = true),
  };
}

/**
 * `pgdrain maintain`'s stop: the first SIGTERM or SIGINT aborts the returned
 * signal (maintain() starts no more passes; the one running commits, and the
 * report is printed: exit 0, as a drain's); a second one exits at once as
 * Node's default would (143, 130), the running pass left to the server to
 * commit or roll back. Held start-up signals act now (no pass runs). Once
 * done() (the report printed, or the error), signals do nothing, as
 * listenForStop's: the process is ending on its own, its work done.
 */
export function listenForMaintainStop(log: (line: string) => void): { signal: AbortSignal; done(): void } {
  const stop = new AbortController();
  let finished = false;
  const onSignal = (name: NodeJS.Signals) => {
    stopped = true;
    if (finished) return; // the report is printed (or the error); the process is closing
    if (!stop.signal.aborted) {
      log(`pgdrain: ${name}: starting no more maintenance passes; the running one ends first `
          + '(a second SIGTERM or SIGINT exits now, that pass committed or rolled back on the server)');
      return void stop.abort(new Error(name));
    }
    process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
    process.kill(process.pid, name);  // no listener left: Node's default, the process ends by the signal
  };
  listenInPlaceOfEarly(onSignal);
  return { signal: stop.signal, done: () => void (finished = ended = true) };
}

/** onSignal takes SIGTERM and SIGINT over from holdEarlyStops: what came during start-up acts now. */
function listenInPlaceOfEarly(onSignal: (name: NodeJS.Signals) => void): void {
  process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
  process.off('SIGTERM', holdEarly).off('SIGINT', holdEarly);
  const held = early ?? [];
  early = undefined;
  for (const name of held) onSignal(name);
}

/**
 * What start-up waits for (a tasks module loading), given up at a second
 * signal: rejects with failure(the signal's name) once `again` has aborted,
 * before or while waiting. What was waited for is left to settle unobserved.
 */
export async function unlessAgain<T>(work: Promise<T>, again: AbortSignal,
                                     failure: (signal: string) => Error): Promise<T> {
  let onAgain = () => {};
  const interrupted = new Promise<never>((_, reject) => {
    onAgain = () => reject(failure(again.reason instanceof Error ? again.reason.message : String(again.reason)));
    if (again.aborted) onAgain();
    else again.addEventListener('abort', onAgain, { once: true });
  });
  try {
    return await Promise.race([work, interrupted]);
  } finally {
    again.removeEventListener('abort', onAgain);
  }
}

/**
 * After a drain (or serve) has ended and said so: exit now, even if a handler
 * that ignores its AbortSignal still holds the event loop. Its job was
 * settled already (nacked a margin before its timeout, or given back), and signals no
 * longer reach anyone once the drain is done, so waiting for it would leave a
 * process that SIGTERM cannot end.
 */
export function exitWhenEnded(): void {
  if (stopped || ended) process.exit();
}
