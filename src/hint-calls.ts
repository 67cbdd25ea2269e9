// A fix-it hint names the call of the caller's own language. The SQL
// functions' hints name the SQL call (sql/0039's "create it with
// jobs.create_queue('q')", sql/0003's "raise it with jobs.create_queue('q', max_size => ...)",
// sql/0034's "purge it first (jobs.purge_queue('q'))"), for an SQL caller;
// translateError gives a TS caller the TS call (asTsCalls: queues.create,
// queues.purge); the CLI and the HTTP API (which has no route that creates
// or purges a queue) name the command (asCommand: pgdrain queue create, pgdrain queue purge).
// sql/0034's hints that name no queue (jobs.maintain(), jobs.cancel_bulk: a
// delete refused for running jobs alone, or for jobs naming it as their dead
// letter) are rewritten the same way (PHRASES: maintain(db), queue.cancel(jobIds);
// pgdrain drain, pgdrain cancel ID...), and so are sql/0028's reschedule hints naming
// an argument (max_retries, attempt: maxRetries, attempts; --max-retries, --attempts).
//
// Only pgdrain's own hint is rewritten: the one sentence of HINTS a message
// ends with (a schedule's last_error, which joins messages, is rewritten one
// message at a time: lastErrorForCommand). A call anywhere else in a message
// is the caller's own text echoed (an unknown option's key, a name) and is
// left as it was given.

/** The hint sentences, each around its call: what comes before it and what ends the message after it. */
const HINTS: readonly (readonly [lead: string, tail: string])[] = [
  ['create it with ', ''], // sql/0039 (jobs.raise_no_queue), sql/0033, queue-size.ts: an unknown queue
  ['create it first with ', ''], // sql/0003, sql/0017: an unknown dead-letter queue
  ['raise it with ', ''], // sql/0003: a full queue
  ['created again (', ')'], // sql/0029: redrive's unknown queue
  ['give that one another (', ') first'], // sql/0034: deleting a dead-letter target
  ['purge it first (', ') and wait for its running jobs to end'], // sql/0034: deleting a queue with jobs waiting and running
  ['purge it first (', ')'], // sql/0034: deleting a queue with jobs waiting, none running
  ['purge it with ', ''], // sql/0034: deleting the default queue
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
const SQL_PURGE_QUEUE = String.raw`jobs\.purge_queue\('((?:[^']|'')*)'\)`;
const TS_PURGE_QUEUE = String.raw`queues\.purge\('((?:[^'\\]|\\.)*)'\)`;

// Hints whose call names no queue, each where pgdrain puts it: lead, then the
// call, then a tail (a regex source, by the message's surface) that ends the
// message; rewritten only there, so a name that holds the text is left alone.
// Each is rewritten in turn: a refused delete's maintain hint comes before its
// purge or cancel hint, and is read before that one is rewritten.
const CANCEL_RUNNING = (call: string) => String.raw`; let its running jobs end, or cancel them \(${escape(call)}\), first`;
const MAINTAIN_AFTER = (purge: string, cancel: string) =>
  String.raw` ends them(?:; purge it first \(${purge}\)(?: and wait for its running jobs to end)?|${CANCEL_RUNNING(cancel)})?`;
const PHRASES: readonly { lead: string; sql: string; ts: string; command: string; tail: { sql: string; ts: string } }[] = [
  // sql/0034: deleting a queue with cancelled dependants to end, before its purge or cancel hint if any
  { lead: 'cancelled dependants to end: ', sql: 'any claim or jobs.maintain()', ts: 'any claim or maintain(db)',
    command: 'any claim (pgdrain drain)', tail: { sql: MAINTAIN_AFTER(SQL_PURGE_QUEUE, 'jobs.cancel_bulk'),
      ts: MAINTAIN_AFTER(TS_PURGE_QUEUE, 'queue.cancel(jobIds)') } },
  // sql/0034: deleting a queue whose only active jobs run
  { lead: 'let its running jobs end, or cancel them (', sql: 'jobs.cancel_bulk', ts: 'queue.cancel(jobIds)',
    command: 'pgdrain cancel ID...', tail: { sql: String.raw`\), first`, ts: String.raw`\), first` } },
  // sql/0034: deleting the dead-letter queue of active jobs
  { lead: 'dead_letter: let them end, or cancel them (', sql: 'jobs.cancel_bulk', ts: 'queue.cancel(jobIds)',
    command: 'pgdrain cancel ID...', tail: { sql: String.raw`\), first`, ts: String.raw`\), first` } },
  // sql/0034: purging a queue with more retried serial heads than one call ends
  { lead: ': cancel some with ', sql: 'jobs.cancel_bulk', ts: 'queue.cancel(jobIds)',
    command: 'pgdrain cancel ID...', tail: { sql: ' in smaller calls first', ts: ' in smaller calls first' } },
  // sql/0028: jobs.reschedule's attempt past a job's max_retries, or max_retries under its attempts spent
  { lead: ': give ', sql: 'max_retries', ts: 'maxRetries', command: '--max-retries',
    tail: { sql: ' too to raise it', ts: ' too to raise it' } },
  { lead: ': give ', sql: 'attempt', ts: 'attempts', command: '--attempts',
    tail: { sql: ' too to reset them', ts: ' too to reset them' } },
];

/** message with its PHRASES calls of surface `from` as surface `to`'s. */
function rewritePhrase(message: string, from: 'sql' | 'ts', to: 'ts' | 'command'): string {
  for (const phrase of PHRASES) {
    const match = new RegExp(`${escape(phrase.lead + phrase[from])}(?=${phrase.tail[from]}$)`).exec(message);
    if (match) message = message.slice(0, match.index) + phrase.lead + phrase[to] + message.slice(match.index + match[0].length);
  }
  return message;
}

/** text as a TS string literal in single quotes. */
export const tsString = (text: string) => `'${text.replace(/[\\']/g, '\\$&')}'`;

/** text as one shell word: as it is when nothing in it is special to a shell, else single-quoted. */
export const shellWord = (text: string) => (/^[\w.:@%+=,/-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`);

/** The TS call that creates queue name: queues.create('q'). */
export const createQueueCall = (name: string) => `queues.create(${tsString(name)})`;

/** The command `pgdrain queue <verb>` on queue name with flags; `-- -q` for a name with a leading dash. */
function queueCommand(verb: string, name: string, flags: readonly string[] = []): string {
  const word = shellWord(name);
  return [`pgdrain queue ${verb}`, ...(word.startsWith('-') ? [...flags, '--', word] : [word, ...flags])].join(' ');
}

/** The command that creates queue name with flags: `pgdrain queue create q --max-size N`; `-- -q` for a name with a leading dash. */
export const createQueueCommand = (name: string, flags: readonly string[] = []) => queueCommand('create', name, flags);

/** message with its jobs.create_queue(…) or jobs.purge_queue(…) hint as the TS call: queues.create('q', { maxSize: ... }), queues.purge('q'). */
export function asTsCalls(message: string): string {
  message = rewritePhrase(message, 'sql', 'ts');
  const created = rewriteHint(message, SQL_CREATE_QUEUE, (name, args) => {
    const options = [...args!.matchAll(/, ([a-z_]+) => ([^,)]+)/g)].map(([, k, v]) => `${TS_OPTION[k!] ?? k}: ${v}`);
    return `queues.create(${tsString(name!.replace(/''/g, "'"))}${options.length ? `, { ${options.join(', ')} }` : ''})`;
  });
  return rewriteHint(created, SQL_PURGE_QUEUE, (name) => `queues.purge(${tsString(name!.replace(/''/g, "'"))})`);
}

/**
 * The TS call a hint names (asTsCalls' queues.create('q', { maxSize: ... }),
 * queues.purge('q')) as the command: pgdrain queue create q --max-size N (an
 * option given null as its --no- flag), pgdrain queue purge q.
 */
export function asCommand(message: string): string {
  message = rewritePhrase(message, 'ts', 'command');
  const purge = rewriteHint(message, TS_PURGE_QUEUE, (name) => queueCommand('purge', name!.replace(/\\(.)/g, '$1')));
  return rewriteHint(purge, TS_CREATE_QUEUE, (name, options) =>
    createQueueCommand(name!.replace(/\\(.)/g, '$1'), (options?.split(', ') ?? []).map((option) => {
      const [key, value] = option.split(': ') as [string, string];
      const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      return value === 'null' ? `--no-${flag}` : `--${flag} ${value === '...' ? 'N' : value}`;
    })));
}
