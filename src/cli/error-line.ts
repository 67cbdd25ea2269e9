// The CLI's one-line error for a core error: options named as the flags that
// set them (TS calls a hint names are the commands that do the same: hint-calls.ts).

import { ValidationError } from '../errors.js';

// Flags whose name is not the option's in kebab case.
const FLAG_OF: Record<string, string> = { delaySeconds: '--delay', runAt: '--at', timeoutSeconds: '--timeout',
                                          throttleSeconds: '--throttle', retryDelaySeconds: '--retry-delay',
                                          retryDelayMaxSeconds: '--retry-delay-max', expiresInSeconds: '--expires-in' };

/**
 * A core option named as the flag that set it: "options.dedupeKey: …" →
 * "--dedupe-key: …", redrive's "filter.errorLike: …" → "--error-like: …";
 * a job id as the commands' <id> argument.
 */
export function asFlag(message: string): string {
  // queue create's --group-tiers and --group-concurrency make one option.
  return message.replace(/^options\.groupConcurrency\.tiers(?=[.:])/, '--group-tiers')
    .replace(/^options\.groupConcurrency\.default(?=[.:])/, '--group-concurrency')
    .replace(/^(?:options|filter)\.([A-Za-z]+)(?=[.:])/, (_, name: string) => flagOf(name))
    .replace(/^jobId:/, 'id:');
}

/** The flag that sets a core option: delaySeconds → --delay, maxRetries → --max-retries. */
export function flagOf(option: string): string {
  return FLAG_OF[option] ?? `--${option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * check(), its ValidationError about the core's `field` named `as`, the
 * argument or flag that gave the value: publish's body is its [json]
 * argument or --body, as a value that is no JSON is named ("json: must be
 * JSON …"), not the core's "body: must not contain \u0000 …". `rule`
 * rewrites the rule's words where they name another option (as its flag).
 */
export function namedAs<T>(field: string, as: string, check: () => T, rule = (r: string) => r): T {
  try {
    return check();
  } catch (error) {
    if (!(error instanceof ValidationError) || error.field !== field) throw error;
    throw new ValidationError(as, rule(error.rule), { cause: error });
  }
}
