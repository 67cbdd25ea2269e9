// README's Cloudflare Worker set-up as a user pastes it (Cloudflare Workers and
// Neon): the wrangler.toml it gives for your own Worker, and the steps that
// deploy it. The Worker's behaviour under each flag is tested in workerd
// (cloudflare*.test.ts); here, that the README hands a user the same settings
// as this repository's wrangler.toml, which those tests run with.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const repoToml = readFileSync(join(root, 'wrangler.toml'), 'utf8');

/** The README's Worker section, up to the next section. */
const section = /^## Cloudflare Workers and Neon\n([\s\S]*?)^## /m.exec(readme)![1]!;
/** Its fenced blocks, each with its language (`toml`, or '' for the shell steps). */
function blocks(): { lang: string; code: string }[] {
  const found: { lang: string; code: string }[] = [];
  const lines = section.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)$/.exec(lines[i]!);
    if (!open) continue;
    const end = lines.indexOf('```', i + 1);
    found.push({ lang: open[1]!, code: lines.slice(i + 1, end).join('\n') });
    i = end;
  }
  return found;
}
const flagsOf = (toml: string) => [.../^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml)![1]!.matchAll(/"([^"]+)"/g)]
  .map((m) => m[1]!).sort();

describe("README's Worker set-up", () => {
  it("its wrangler.toml has this repository's compatibility flags (enable_request_signal: a POST /drain whose caller leaves stops)", () => {
    const toml = blocks().find((b) => b.lang === 'toml')?.code;
    expect(toml).toBeDefined();
    expect(flagsOf(toml!)).toEqual(flagsOf(repoToml));
  });

  it('its deploy steps create the schema: the Worker never migrates (its drains fail not_migrated until then)', () => {
    const steps = blocks().find((b) => b.lang === '' && /^wrangler deploy$/m.test(b.code))?.code;
    expect(steps).toBeDefined();
    const migrate = steps!.indexOf('pgdrain migrate');
    expect(migrate).toBeGreaterThanOrEqual(0);
    expect(migrate).toBeLessThan(steps!.search(/^wrangler deploy$/m));
  });
});
