import type { Command } from 'commander';

// `pgdrain queue typo --help` (or `pgdrain typo -h`, `pgdrain help queue typo`):
// commander shows the group's help for any --help before it looks at the
// subcommand's name, and its `help` command reads one word only, so both
// exited 0 and a script's typo passed. A group whose help comes with a word
// that names none of its commands fails instead, as it does without --help:
// exit 2, naming the word. `help A B` is `A B --help`: the help of A's B.
// Without --help the same message: commander's said only "(Did you mean pause?)",
// or nothing for a word like none of them.

/** The group's commands' names, its help command left out. */
function commandNames(cmd: Command): string[] {
  return cmd.commands.filter((c) => c.name() !== 'help').flatMap((c) => [c.name(), ...c.aliases()]);
}

function unknownCommand(cmd: Command, name: string): never {
  return cmd.error(`error: unknown command '${name}' (${cmd.parent ? `pgdrain ${cmd.name()}` : 'pgdrain'} has ${commandNames(cmd).join(', ')})`,
    { code: 'commander.unknownCommand' });
}

/** Refuses, in cmd and every group under it, help asked for with an unknown subcommand. */
export function refuseUnknownCommands(cmd: Command): void {
  for (const sub of cmd.commands) refuseUnknownCommands(sub);
  if (cmd.commands.length === 0) return;
  cmd.on('command:*', (operands: string[]) => unknownCommand(cmd, operands[0]!));
  cmd.on('beforeHelp', () => {
    // A group takes no option with a value: its first word that is no option names the subcommand.
    const words = cmd.args.filter((word) => !word.startsWith('-'));
    const name = words[0] === 'help' ? words[1] : words[0];
    if (name === undefined || name === 'help' || commandNames(cmd).includes(name)) return;
    unknownCommand(cmd, name);
  });
  // In the place of commander's, which took the first word and left the rest.
  cmd.command('help').argument('[command...]').description('display help for command')
    .allowUnknownOption()
    .action((words: string[]) => {
      let target = cmd;
      for (const word of words.filter((w) => !w.startsWith('-'))) {
        if (target.commands.length === 0) break; // a command's arguments, as with --help
        const next = target.commands.find((c) => c.name() === word || c.aliases().includes(word));
        if (!next) unknownCommand(target, word);
        target = next;
      }
      target.help();
    });
}
