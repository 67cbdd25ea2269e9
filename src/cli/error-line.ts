// The CLI's one-line error for a core error: options named as the flags that
// set them, TS calls a hint names as the commands that do the same.

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
    .replace(/^(?:options|filter)\.([A-Za-z]+)(?=[.:])/,
    (_, name: string) => FLAG_OF[name] ?? `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`)
    .replace(/^jobId:/, 'id:');
}

/**
 * The TS call a hint names (translateError's queues.create('q', { maxSize: ... }),
 * from the SQL's jobs.create_queue) as the command: pgdrain queue create q --max-size N;
 * an option given null as its --no- flag.
 */
export function asCommand(message: string): string {
  return message.replace(/queues\.create\('([^']*)'(?:, \{ ([^}]*) \})?\)/g, (_, name: string, options?: string) =>
    [`pgdrain queue create ${name}`, ...(options?.split(', ') ?? []).map((option) => {
      const [key, value] = option.split(': ') as [string, string];
      const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      return value === 'null' ? `--no-${flag}` : `--${flag} ${value === '...' ? 'N' : value}`;
    })].join(' '));
}
