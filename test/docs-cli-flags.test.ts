// The `pgdrain` commands the documentation shows, as a reader types them:
// README.md's and docs/*.md's inline code and their shell and bare blocks
// (readme-examples.test.ts compiles the ```ts blocks; nothing ran these). Each
// command must exist, and each --option written after it must be one that
// command's --help lists (dist/cli.mjs: run `npm run build` first). A synopsis
// line's brackets and bars are read as words; a line that goes on below it,
// indented, continues it; a `pgdrain` further on in a block's line is its
// description's; a `--` alone ends the options. No database.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { docFiles, fencedBlocks, type DocFile } from './support/docs.js';

const CLI = resolve('dist/cli.mjs');
const GROUPS = new Set(['queue', 'schedule', 'event']);

/** One `pgdrain …` as written: where, the words after `pgdrain`. */
interface Written { at: string; words: string[] }

/** Splits a piece of code at each `pgdrain ` into commands, brackets, bars, parentheses, backticks and `\` dropped. */
function commandsIn(code: string, at: string): Written[] {
  return code.split(/(?<![\w/.-])pgdrain (?=[a-z])/).slice(1).map((rest) => ({
    at, words: rest.replace(/[[\]|\\`()]/g, ' ').split(/\s+/).filter(Boolean) }));
}

/** Every `pgdrain …` of a page: its inline code spans (outside blocks), and its blocks but ts, sql, json and toml. */
export function writtenCommands(file: DocFile): Written[] {
  const found: Written[] = [];
  for (const block of fencedBlocks(file)) {
    if (['ts', 'sql', 'json', 'toml'].includes(block.lang)) continue;
    const lines = block.code.split('\n');
    for (let i = 0; i < lines.length; i++) {
      // A command starts its line (after `$ `, variables, `npx `); one named further on is a description's.
      const head = /^\s*(?:\$ )?(?:[A-Z_]+=\S* )*(?:npx )?(?=pgdrain [a-z])/.exec(lines[i]!);
      if (!head) continue;
      const start = i;
      let text = lines[i]!.slice(head[0].length);
      while (i + 1 < lines.length && /^\s+[[-]/.test(lines[i + 1]!)) text += ` ${lines[++i]}`;
      found.push(...commandsIn(text, `${file.path}:${block.line + start}`).slice(0, 1));
    }
  }
  const prose = file.text.replace(/^```[\s\S]*?^```$/gm, (b) => b.replace(/[^\n]/g, ' '));
  for (const m of prose.matchAll(/`([^`]+)`/g)) {
    const line = prose.slice(0, m.index).split('\n').length;
    found.push(...commandsIn(m[1]!.replace(/\s*\n\s*/g, ' '), `${file.path}:${line}`));
  }
  return found;
}

/** The command path (`queue create`) a written command names, and its words after it. */
function commandPath(words: string[]): { path: string[]; rest: string[] } {
  const [first = '', second] = words;
  if (GROUPS.has(first) && second !== undefined && /^[a-z][a-z-]*$/.test(second)) return { path: [first, second], rest: words.slice(2) };
  return { path: [first], rest: words.slice(1) };
}

/** The --options a written command uses, up to a `--` alone. */
function optionsOf(rest: string[]): string[] {
  const end = rest.indexOf('--');
  return (end < 0 ? rest : rest.slice(0, end)).flatMap((w) => /^--[a-z][a-z-]*/.exec(w)?.[0] ?? []);
}

/** A command's --help, or undefined when there is no such command (a group answers an unknown one with its own help). */
function help(path: string[]): Promise<string | undefined> {
  return new Promise((done) => execFile(process.execPath, [CLI, ...path, '--help'], { env: { ...process.env, DATABASE_URL: '' } },
    (error, stdout) => done(!error && stdout.startsWith(`Usage: pgdrain ${path.join(' ')} `) ? stdout : undefined)));
}

/** What is wrong with the written commands, each `at: pgdrain …: problem`, given each command path's --help. */
export async function problems(written: Written[], helpOf = help): Promise<string[]> {
  const paths = new Map(written.map(({ words }) => commandPath(words).path).map((p) => [p.join(' '), p]));
  const helps = new Map<string, string | undefined>();
  const keys = [...paths.keys()];
  // Four --help processes at a time: the machine is shared.
  await Promise.all(Array.from({ length: 4 }, async () => {
    for (let key = keys.shift(); key !== undefined; key = keys.shift()) helps.set(key, await helpOf(paths.get(key)!));
  }));
  const out: string[] = [];
  for (const { at, words } of written) {
    const { path, rest } = commandPath(words);
    const key = path.join(' ');
    const text = helps.get(key);
    if (text === undefined) {
      out.push(`${at}: pgdrain ${key}: no such command`);
      continue;
    }
    const listed = new Set(text.match(/--[a-z][a-z-]*/g));
    for (const option of optionsOf(rest)) {
      if (option !== '--help' && !listed.has(option)) out.push(`${at}: pgdrain ${key} ${option}: not an option of pgdrain ${key}`);
    }
  }
  return out;
}

describe("the documentation's pgdrain commands", () => {
  it('are commands, with options their --help lists', async () => {
    const written = docFiles().flatMap((f) => writtenCommands(f));
    // The synopsis of docs/cli.md, the Kubernetes and fast-pickup lines, the schedule synopsis, and the prose.
    expect(written.length).toBeGreaterThan(100);
    expect(written.some((w) => w.words.join(' ').startsWith('drain --tasks MODULE --batch N'))).toBe(true);
    expect(await problems(written)).toEqual([]);
  });

  it('reads a synopsis, its continued lines and inline code, and stops at `--`', async () => {
    const page = { path: 'docs/x.md', text: [
      'Run `pgdrain queue create mail --max-size 5 -- --not-an-option` or `pgdrain drain',
      '--nosuch 1`, `pgdrain_worker`, `pgdrain: database unavailable`, `pgdrain COMMAND --help` and `pgdrain nope`.',
      '```', 'pgdrain drain --tasks M [--batch N]', '              [--linger S | --poll S]   (see `pgdrain nope`)',
      'src/cli/   the pgdrain command', '```',
      '```ts', "await run('pgdrain drain --bogus');", '```'].join('\n') };
    const written = writtenCommands(page);
    expect(written.map((w) => `${w.at} ${w.words.join(' ')}`)).toEqual([
      'docs/x.md:4 drain --tasks M --batch N --linger S --poll S see',
      'docs/x.md:1 queue create mail --max-size 5 -- --not-an-option',
      'docs/x.md:1 drain --nosuch 1',
      'docs/x.md:2 nope',
    ]);
    const helps: Record<string, string> = { drain: '--tasks --batch --linger --poll', 'queue create': '--max-size' };
    expect(await problems(written, async (path) => helps[path.join(' ')])).toEqual([
      'docs/x.md:1: pgdrain drain --nosuch: not an option of pgdrain drain',
      'docs/x.md:2: pgdrain nope: no such command',
    ]);
  });
});
