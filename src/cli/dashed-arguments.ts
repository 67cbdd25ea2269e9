import type { Command, ErrorOptions } from 'commander';
import { shellWord } from '../hint-calls.js';

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

/** The line after commander's unknown-option error: put the argument after --. */
function hint(cmd: Command, flag: string): string {
  const args = cmd.registeredArguments;
  if (args.length === 1) {
    const name = args[0]!.name();
    const article = /^[aeiou]/.test(name) ? 'an' : 'a';
    return `(${article} <${name}> that starts with - goes after --, options before it: ${words(cmd)} -- ${shellWord(flag)})`;
  }
  const usage = args.map((a) => `${a.required ? '<' : '['}${a.name()}${a.variadic ? '...' : ''}${a.required ? '>' : ']'}`);
  return `(an argument that starts with - goes after --, options before it: ${words(cmd)} -- ${usage.join(' ')})`;
}

/**
 * cmd and its subcommands: where one takes a name, an unknown option with
 * no closer option to suggest, in the place of an argument not yet given, is
 * followed by hint's line. After them all (`queue purge mail -f`) it is a
 * mistyped option, not a name: `queue purge -- -f` would purge another queue.
 */
export function explainDashedArguments(cmd: Command): void {
  if (cmd.registeredArguments.some((a) => DASHED.has(a.name()))) {
    const error = cmd.error.bind(cmd);
    cmd.error = (message: string, options?: ErrorOptions) => {
      const flag = /^error: unknown option '(.*)'$/.exec(message)?.[1];
      // cmd.args: the arguments before the unknown option, then it and the rest.
      const named = flag !== undefined && cmd.args.indexOf(flag) < cmd.registeredArguments.length;
      return error(options?.code === 'commander.unknownOption' && named ? `${message}\n${hint(cmd, flag)}` : message, options);
    };
  }
  for (const sub of cmd.commands) explainDashedArguments(sub);
}
