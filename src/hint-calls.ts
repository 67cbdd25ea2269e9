// A fix-it hint names the call of the caller's own language. The SQL
// functions' hints name the SQL call (sql/0003's "create it with
// jobs.create_queue('q')", "raise it with jobs.create_queue('q', max_size => ...)"),
// for an SQL caller; translateError gives a TS caller the TS call
// (asTsCalls); the CLI and the HTTP API (which has no route that creates a
// queue) name the command (asCommand).

const SQL_CREATE_QUEUE = /jobs\.create_queue\(('(?:[^']|'')*')((?:, [a-z_]+ => [^,)]+)*)\)/g;
const TS_OPTION: Record<string, string> = { max_size: 'maxSize', dead_letter: 'deadLetter' };

/** message with its jobs.create_queue(…) hints as the TS call: queues.create('q', { maxSize: ... }). */
export function asTsCalls(message: string): string {
  return message.replace(SQL_CREATE_QUEUE, (_, name: string, args: string) => {
    const options = [...args.matchAll(/, ([a-z_]+) => ([^,)]+)/g)].map(([, k, v]) => `${TS_OPTION[k!] ?? k}: ${v}`);
    return `queues.create(${name}${options.length ? `, { ${options.join(', ')} }` : ''})`;
  });
}

/**
 * The TS call a hint names (asTsCalls' queues.create('q', { maxSize: ... }))
 * as the command: pgdrain queue create q --max-size N; an option given null
 * as its --no- flag.
 */
export function asCommand(message: string): string {
  return message.replace(/queues\.create\('([^']*)'(?:, \{ ([^}]*) \})?\)/g, (_, name: string, options?: string) =>
    [`pgdrain queue create ${name}`, ...(options?.split(', ') ?? []).map((option) => {
      const [key, value] = option.split(': ') as [string, string];
      const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      return value === 'null' ? `--no-${flag}` : `--${flag} ${value === '...' ? 'N' : value}`;
    })].join(' '));
}
