// README.md and docs/*.md link to each other by relative paths (GitHub renders
// them; docs/ ships in the package beside README.md): every relative link
// must name a file of the repository, and an anchor (`file.md#section`,
// `#section`) a heading of that file, as GitHub makes its id. Every docs page
// is reached from README.md. No database.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';
import { docFile, docFiles, root, type DocFile } from './support/docs.js';

/** The text outside fenced blocks and inline code, where a link is a link. */
function prose(text: string): string {
  return text.replace(/^```[\s\S]*?^```$/gm, '').replace(/`[^`\n]*`/g, '');
}

/** `[text](target)` links of a file's prose. */
function links(file: DocFile): string[] {
  return [...prose(file.text).matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
}

/** GitHub's heading ids: lower case, punctuation but `-` and `_` dropped, spaces to `-`, repeats numbered. */
function anchors(text: string): Set<string> {
  const ids = new Set<string>();
  const count = new Map<string, number>();
  for (const m of text.replace(/^```[\s\S]*?^```$/gm, '').matchAll(/^#{1,6} (.+)$/gm)) {
    const base = m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = count.get(base) ?? 0;
    count.set(base, n + 1);
    ids.add(n === 0 ? base : `${base}-${n}`);
  }
  return ids;
}

/** What is wrong with one link of `from`, or null. */
function broken(from: DocFile, target: string): string | null {
  if (/^[a-z]+:/i.test(target)) return null; // https:, mailto:
  const [path, anchor] = target.split('#') as [string, string | undefined];
  const file = path === '' ? from.path : normalize(join(dirname(from.path), path));
  if (file.startsWith('..') || !existsSync(join(root, file))) return `${from.path}: ${target}: no file ${file}`;
  if (anchor === undefined) return null;
  if (!file.endsWith('.md')) return `${from.path}: ${target}: an anchor into a file that is not markdown`;
  return anchors(docFile(file).text).has(anchor) ? null : `${from.path}: ${target}: no heading #${anchor} in ${file}`;
}

describe('documentation links', () => {
  it('every relative link names a file, and every anchor a heading of it', () => {
    const files = docFiles();
    expect(files.length).toBeGreaterThan(10);
    const problems = files.flatMap((f) => links(f).map((t) => broken(f, t))).filter((p) => p !== null);
    expect(problems).toEqual([]);
  });

  it('every docs page is linked from README.md, or from a page it links to', () => {
    const reached = new Set<string>(['README.md']);
    const queue = ['README.md'];
    while (queue.length > 0) {
      const from = docFile(queue.shift()!);
      for (const target of links(from)) {
        const path = target.split('#')[0]!;
        if (/^[a-z]+:/i.test(target) || !path.endsWith('.md')) continue;
        const file = normalize(join(dirname(from.path), path));
        if (!reached.has(file) && existsSync(join(root, file))) {
          reached.add(file);
          queue.push(file);
        }
      }
    }
    expect(docFiles().map((f) => f.path).filter((p) => !reached.has(p))).toEqual([]);
  });

  it('every docs page leads back to the documentation list of README.md', () => {
    // A reader who lands on a page from a search finds the rest from its top line.
    const pages = docFiles().filter((f) => f.path.startsWith('docs/'));
    expect(pages.length).toBeGreaterThan(10);
    expect(pages.filter((f) => !links(f).includes('../README.md#documentation')).map((f) => f.path)).toEqual([]);
  });

  it('docs/ ships in the npm package, which shows README.md and its relative links into docs/', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files).toContain('docs/*.md');
    expect(links(docFile('README.md')).some((t) => t.startsWith('docs/'))).toBe(true);
  });

  it('no docs page and no shipped source points at a README section: they moved to docs/*.md', () => {
    // README.md is a short start page now; "README \"Lease extension\"" sends a reader to a
    // section it no longer has. A pointer names the docs page (README.md by file name is fine).
    const sources = ['src', 'src/db', 'src/cli', 'src/http', 'functions', 'deploy', 'deploy/k8s', 'deploy/lambda', 'deploy/systemd', 'sql']
      .flatMap((dir) => readdirSync(join(root, dir), { withFileTypes: true })
        .filter((e) => e.isFile() && (dir !== 'sql' || /^0\d+_.*\.sql$/.test(e.name)))
        .map((e) => `${dir}/${e.name}`));
    const files = [...docFiles().filter((f) => f.path !== 'README.md'), ...sources.map((path) => docFile(path))];
    const pointers = files.flatMap((f) => f.text.split('\n').flatMap((line, i) =>
      /\bREADME\b(?!\.md)/.test(line) ? [`${f.path}:${i + 1}: ${line.trim()}`] : []));
    expect(pointers).toEqual([]);
  });

  it('in the npm package too: every relative link of a page it ships names a file it ships', () => {
    // docs/ ships beside README.md; a link out of it to a file of the repository only (deploy/, test/)
    // leads a reader of node_modules/pgdrain, or of the package's page, nowhere.
    const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
    expect(pack.status, pack.stderr).toBe(0);
    const shipped = new Set((JSON.parse(pack.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path));
    const pages = [...shipped].filter((p) => p.endsWith('.md')).map((p) => docFile(p));
    expect(pages.map((f) => f.path)).toContain('docs/http-and-lambda.md');
    const problems = pages.flatMap((f) => links(f).flatMap((target) => {
      const path = target.split('#')[0]!;
      if (/^[a-z]+:/i.test(target) || path === '') return [];
      const file = normalize(join(dirname(f.path), path));
      return shipped.has(file) ? [] : [`${f.path}: ${target}: ${file} is not in the package`];
    }));
    expect(problems).toEqual([]);
  });

  it('reads a link in prose, not in code, and makes heading ids as GitHub does', () => {
    const page = { path: 'docs/x.md', text: '# SQL API (schema `jobs`)\n\n[a](b.md#c) `[d](e.md)`\n```\n[f](g.md)\n```\n## pg_cron: the clock\n## A\n## A\n' };
    expect(links(page)).toEqual(['b.md#c']);
    expect([...anchors(page.text)]).toEqual(['sql-api-schema-jobs', 'pg_cron-the-clock', 'a', 'a-1']);
    expect(broken(page, 'sql-api.md')).toBeNull();
    expect(broken(page, 'nowhere.md')).toBe('docs/x.md: nowhere.md: no file docs/nowhere.md');
    expect(broken(page, '../README.md#nothing-here')).toBe('docs/x.md: ../README.md#nothing-here: no heading #nothing-here in README.md');
  });
});
