// The Cloudflare Worker set-up as a user pastes it (docs/cloudflare.md,
// "Cloudflare Workers and Neon"): the wrangler.toml it gives for your own
// Worker, and the steps that deploy it. The Worker's behaviour under each flag
// is tested in workerd (cloudflare*.test.ts); here, that the docs hand a user
// the same settings as this repository's wrangler.toml, which those tests run
// with.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { docFile, fencedBlocks, root } from './support/docs.js';

const repoToml = readFileSync(join(root, 'wrangler.toml'), 'utf8');

/** The Worker page's fenced blocks, each with its language (`toml`, or '' for the shell steps). */
const blocks = () => fencedBlocks(docFile('docs/cloudflare.md'));
const flagsOf = (toml: string) => [.../^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml)![1]!.matchAll(/"([^"]+)"/g)]
  .map((m) => m[1]!).sort();

describe("docs/cloudflare.md's Worker set-up", () => {
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
