import type { Command, ErrorOptions } from 'commander';
import { shellWord } from '../hint-calls.js';
import { withoutPasswords } from './format.js';

// A queue, task, event or schedule name may start with a dash (-x), which
// commander reads as an option: `pgdrain queue delete -x` is "unknown option
// '-x'". Such a name goes after `--`, the end of the options; the error says
// so, with the command that works, as commander's "(Did you mean --dsn?)"
// follows an unknown option that looks like a typo.

/** The arguments a leading dash may start: names (of queues, tasks, events, schedules) and a JSON body (-5). */
const DASHED = new Set(['name', 'queue', 'event', 'task', 'json']);

/** The command's words from the program's: pgdrain queue delete. */
function words(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** The words each command parsed for itself (parseOptions' argv) and what it made of them. */
const given = new WeakMap<Command, { argv: readonly string[]; operands: number; unknown: number }>();

/**
 * The user's words for cmd: its options as given (`--max-size 5`,
 * `--dsn=URL`), and the rest (its arguments, the unknown option among them).
 * cmd.args holds the arguments its parents parsed before the words cmd
 * parsed itself, then what it made of those (operands, then unknown).
 */
function userWords(cmd: Command): { options: string[]; rest: string[] } {
  const own = given.get(cmd);
  const words = own ? [...cmd.args.slice(0, cmd.args.length - own.operands - own.unknown), ...own.argv] : [...cmd.args];
  const options: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (word === '--') {
      rest.push(...words.slice(i + 1));
      break;
    }
    const flag = word.startsWith('--') && word.includes('=') ? word.slice(0, word.indexOf('=')) : word;
    const option = word.startsWith('-') ? cmd.options.find((o) => o.long === flag || o.short === flag) : undefined;
    if (!option) {
      rest.push(word);
      continue;
    }
    options.push(word);
    // Its value, as commander takes it: always for <value>, for [value] when it is not an option.
    const next = words[i + 1];
    if (flag === word && next !== undefined && (option.required || (option.optional && !next.startsWith('-')))) options.push(words[++i]!);
  }
  return { options, rest };
}

/**
 * The line after commander's unknown-option error: put the arguments after --,
 * the user's options before it; a required one not given yet as its name in
 * capitals (not <queue>, which a shell reads as a redirection).
 */
function hint(cmd: Command): string {
  const { options, rest } = userWords(cmd);
  // Each word masked before it is quoted: stderr's mask, on the quoted word, read password='x' as password=' and left x.
  const before = [words(cmd), ...options.map((word) => shellWord(withoutPasswords(word)))].join(' ');
  const args = cmd.registeredArguments;
  const missing = args.slice(rest.length).filter((a) => a.required).map((a) => a.name().toUpperCase());
  const name = args[0]!.name();
  const what = args.length > 1 ? 'an argument' : `${/^[aeiou]/.test(name) ? 'an' : 'a'} <${name}>`;
  return `(${what} that starts with - goes after --, options before it: ${before} -- ${[...rest.map(shellWord), ...missing].join(' ')})`;
}

/**
 * cmd and its subcommands: where one takes a name, an unknown option with
 * no closer option to suggest, in the place of an argument not yet given, is
 * followed by hint's line. After them all (`queue purge mail -f`) it is a
 * mistyped option, not a name: `queue purge -- -f` would purge another queue.
 */
export function explainDashedArguments(cmd: Command): void {
  if (cmd.registeredArguments.some((a) => DASHED.has(a.name()))) {
    const parseOptions = cmd.parseOptions.bind(cmd);
    cmd.parseOptions = (argv: string[]) => {
      const result = parseOptions(argv);
      given.set(cmd, { argv: [...argv], operands: result.operands.length, unknown: result.unknown.length });
      return result;
    };
    const error = cmd.error.bind(cmd);
    cmd.error = (message: string, options?: ErrorOptions) => {
      const flag = /^error: unknown option '(.*)'$/.exec(message)?.[1];
      // cmd.args: the arguments before the unknown option, then it and the rest.
      const named = flag !== undefined && cmd.args.indexOf(flag) < cmd.registeredArguments.length;
      return error(options?.code === 'commander.unknownOption' && named ? `${message}\n${hint(cmd)}` : message, options);
    };
  }
  for (const sub of cmd.commands) explainDashedArguments(sub);
}
