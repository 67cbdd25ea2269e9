// The documentation as the tests read it: README.md and docs/*.md. A test
// that checks an example takes it from whichever file it is in, and names
// that file and line when it fails, so a section moved between files (or a
// README edit) keeps its check.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const root = resolve(import.meta.dirname, '../..');

/** One documentation file: its path from the repository root and its text. */
export interface DocFile {
  path: string;
  text: string;
}

/** A fenced block: the file, the line its code starts on (1-based), its language and code. */
export interface FencedBlock {
  file: string;
  line: number;
  lang: string;
  code: string;
}

/** README.md, then docs/*.md by name. */
export function docFiles(): DocFile[] {
  const docs = readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`);
  return ['README.md', ...docs].map((path) => docFile(path));
}

export function docFile(path: string): DocFile {
  return { path, text: readFileSync(join(root, path), 'utf8') };
}

/** Every documentation file's text, one after another (for a snippet looked up by its content). */
export function allDocsText(): string {
  return docFiles().map((f) => f.text).join('\n');
}

/**
 * The fenced blocks of a file (of language `lang` when given: `ts`, `sql`, '' for a bare fence).
 * A fence left open is an error naming the file and line, rather than a block running to the end.
 */
export function fencedBlocks(file: DocFile, lang?: string): FencedBlock[] {
  const blocks: FencedBlock[] = [];
  const lines = file.text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)$/.exec(lines[i]!);
    if (!open) continue;
    const end = lines.indexOf('```', i + 1);
    if (end < 0) throw new Error(`${file.path}:${i + 1}: a \`\`\`${open[1]} block with no closing \`\`\` line`);
    if (lang === undefined || open[1] === lang) {
      blocks.push({ file: file.path, line: i + 2, lang: open[1]!, code: lines.slice(i + 1, end).join('\n') });
    }
    i = end;
  }
  return blocks;
}

/**
 * The files a page links to, in its order: docs/features.md's list of the
 * feature pages (relative links to .md files beside it, each once).
 */
export function linkedPages(file: DocFile): DocFile[] {
  const dir = file.path.includes('/') ? file.path.slice(0, file.path.lastIndexOf('/') + 1) : '';
  const seen = new Set<string>();
  for (const m of file.text.matchAll(/\]\(([\w-]+\.md)\)/g)) seen.add(`${dir}${m[1]}`);
  return [...seen].map((path) => docFile(path));
}
