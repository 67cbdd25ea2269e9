// Fast pickup (docs/fast-pickup.md) for the adapters' scheduled drains: the
// linger and poll in seconds, with the bounds of the CLI's --linger / --poll
// and PGDRAIN_LINGER_SECONDS / PGDRAIN_POLL_SECONDS (src/cli/main.ts), turned
// into DrainOptions. drain() keeps the linger inside its deadline.
import * as z from 'zod/mini';
import { decimal } from '../src/decimal-text.js';
import { LINGER_SECONDS, POLL_SECONDS } from '../src/idle-wait.js';

const seconds = (min: number, max: number) => {
  const rule = `must be a number of seconds from ${min} to ${max}`;
  return z.number({ error: rule }).check(z.minimum(min, rule), z.maximum(max, rule));
};

/** A schedule's input: JSON numbers. */
export const lingerSecondsSchema = seconds(LINGER_SECONDS.min, LINGER_SECONDS.max);
export const pollSecondsSchema = seconds(POLL_SECONDS.min, POLL_SECONDS.max);

/** A setting: the text of an environment variable or binding ('30', '0.5'), read as the CLI reads it. */
export const settingSeconds = (schema: typeof lingerSecondsSchema) => z.pipe(
  z.transform((v: unknown) => (typeof v === 'number' ? v : typeof v === 'string' ? decimal(v) : NaN)),
  schema);

/** The DrainOptions for a linger and a poll in seconds (either may be absent). */
export function fastPickup(lingerSeconds: number | undefined, pollSeconds: number | undefined): { lingerMs?: number; pollMs?: number } {
  return {
    ...(lingerSeconds ? { lingerMs: Math.round(lingerSeconds * 1000) } : {}),
    ...(pollSeconds === undefined ? {} : { pollMs: Math.round(pollSeconds * 1000) }),
  };
}
