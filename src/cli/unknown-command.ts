import type { Command } from 'commander';

// `pgdrain queue typo --help` (or `pgdrain typo -h`, `pgdrain help typo`):
// commander shows the group's help for any --help before it looks at the
// subcommand's name, and exits 0, so a script's typo passed. A group whose
// help comes with a word that names none of its commands fails instead, as it
// does without --help: exit 2, naming the word.

/** Refuses, in cmd and every group under it, help asked for with an unknown subcommand. */
export function refuseUnknownCommands(cmd: Command): void {
  for (const sub of cmd.commands) refuseUnknownCommands(sub);
  if (cmd.commands.length === 0) return;
  cmd.on('beforeHelp', () => {
    // A group takes no option with a value: its first word that is no option names the subcommand.
    const words = cmd.args.filter((word) => !word.startsWith('-'));
    const name = words[0] === 'help' ? words[1] : words[0];
    const names = cmd.commands.flatMap((c) => [c.name(), ...c.aliases()]);
    if (name === undefined || name === 'help' || names.includes(name)) return;
    cmd.error(`error: unknown command '${name}' (${cmd.parent ? `pgdrain ${cmd.name()}` : 'pgdrain'} has ${names.join(', ')})`,
      { code: 'commander.unknownCommand' });
  });
}
