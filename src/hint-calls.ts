// A fix-it hint names the call of the caller's own language. The SQL
// functions' hints name the SQL call (sql/0003's "create it with
// jobs.create_queue('q')", "raise it with jobs.create_queue('q', max_size => ...)"),
// for an SQL caller; translateError gives a TS caller the TS call
// (asTsCalls); the CLI and the HTTP API (which has no route that creates a
// queue) name the command (asCommand).
//
// Only pgdrain's own hint is rewritten: the one sentence of HINTS a message
// ends with (a schedule's last_error, which joins messages, is rewritten one
// message at a time: lastErrorForCommand). A call anywhere else in a message
// is the caller's own text echoed (an unknown option's key, a name) and is
// left as it was given.

/** The hint sentences, each around its call: what comes before it and what ends the message after it. */
const HINTS: readonly (readonly [lead: string, tail: string])[] = [
  ['create it with ', ''], // sql/0003, sql/0033, queue-size.ts: an unknown queue
  ['create it first with ', ''], // sql/0003, sql/0017: an unknown dead-letter queue
  ['raise it with ', ''], // sql/0003: a full queue
  ['created again (', ')'], // sql/0029: redrive's unknown queue
  ['give that one another (', ') first'], // sql/0034: deleting a dead-letter target
];
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** message with its hint's call (matched by `call`, a regex source with groups) rewritten by `rewrite`. */
function rewriteHint(message: string, call: string, rewrite: (...groups: string[]) => string): string {
  for (const [lead, tail] of HINTS) {
    const hint = new RegExp(`(${escape(lead)})${call}(${escape(tail)})$`);
    const match = hint.exec(message);
    if (match) {
      const [whole, before, ...rest] = match as unknown as [string, string, ...string[]];
      const after = rest.pop()!;
      return message.slice(0, match.index) + before + rewrite(...rest) + after + message.slice(match.index + whole.length);
    }
  }
  return message;
}

// A name goes into each call quoted for where it is pasted: an SQL literal
// (quote doubled), a TS string (quote escaped), a shell word (single-quoted
// when it holds anything but safe characters, and after `--` when it starts
// with a dash, which the command would read as a flag).
const SQL_CREATE_QUEUE = String.raw`jobs\.create_queue\('((?:[^']|'')*)'((?:, [a-z_]+ => [^,)]+)*)\)`;
const TS_CREATE_QUEUE = String.raw`queues\.create\('((?:[^'\\]|\\.)*)'(?:, \{ ([^}]*) \})?\)`;
const TS_OPTION: Record<string, string> = { max_size: 'maxSize', dead_letter: 'deadLetter' };

/** text as a TS string literal in single quotes. */
export const tsString = (text: string) => `'${text.replace(/[\\']/g, '\\$&')}'`;

/** text as one shell word: as it is when nothing in it is special to a shell, else single-quoted. */
export const shellWord = (text: string) => (/^[\w.:@%+=,/-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`);

/** The TS call that creates queue name: queues.create('q'). */
export const createQueueCall = (name: string) => `queues.create(${tsString(name)})`;

/** The command that creates queue name with flags: `pgdrain queue create q --max-size N`; `-- -q` for a name with a leading dash. */
export function createQueueCommand(name: string, flags: readonly string[] = []): string {
  const word = shellWord(name);
  return ['pgdrain queue create', ...(word.startsWith('-') ? [...flags, '--', word] : [word, ...flags])].join(' ');
}

/** message with its jobs.create_queue(…) hint as the TS call: queues.create('q', { maxSize: ... }). */
export function asTsCalls(message: string): string {
  return rewriteHint(message, SQL_CREATE_QUEUE, (name, args) => {
    const options = [...args!.matchAll(/, ([a-z_]+) => ([^,)]+)/g)].map(([, k, v]) => `${TS_OPTION[k!] ?? k}: ${v}`);
    return `queues.create(${tsString(name!.replace(/''/g, "'"))}${options.length ? `, { ${options.join(', ')} }` : ''})`;
  });
}

/**
 * The TS call a hint names (asTsCalls' queues.create('q', { maxSize: ... }))
 * as the command: pgdrain queue create q --max-size N; an option given null
 * as its --no- flag.
 */
export function asCommand(message: string): string {
  return rewriteHint(message, TS_CREATE_QUEUE, (name, options) =>
    createQueueCommand(name!.replace(/\\(.)/g, '$1'), (options?.split(', ') ?? []).map((option) => {
      const [key, value] = option.split(': ') as [string, string];
      const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      return value === 'null' ? `--no-${flag}` : `--${flag} ${value === '...' ? 'N' : value}`;
    })));
}
