// deploy/worker-loop.sh written over while a loop runs it (the same file, rewritten in place, as cp or an
// editor writes it), under dash, bash and busybox ash: the running loop goes on with the text it started
// with, and a stop ends it as usual. A shell reads a script as it runs it; bash, before the loop was one
// { } block, read its command after the `while` at its old byte offset in the new text: a syntax error,
// exit 2 (a stop-race run of worker-loop-stop.test.ts saw it once, its loop's file being edited).
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from './support/drain-process.js';
import { LOOP, SHELLS, loop, running } from './support/loop-process.js';

afterEach(() => {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
});

describe.each(SHELLS)('under %s', (shell) => {
  it('a newer version written over the running loop\'s file changes nothing until it starts again: a stop ends it, exit 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgdrain-loop-copy-'));
    const script = join(dir, 'worker-loop.sh');
    const text = readFileSync(LOOP, 'utf8');
    writeFileSync(script, text);
    const inode = statSync(script).ino;
    const p = loop(shell, {}, [], { script });
    p.arm();
    await until(async () => p.log().includes('start'), 'the drain to start');
    // The newer version has a line more near its top: every later line is further on. Written in place.
    writeFileSync(script, text.replace('\nset -u\n', '\n# a newer version\nset -u\n'));
    expect(statSync(script).ino).toBe(inode);
    p.child.kill('SIGTERM');
    const exit = await p.exited;
    expect({ code: exit.code, log: p.log(), stderr: exit.stderr }).toEqual({ code: 0, log: ['start', 'term'], stderr: '' });
    p.done();
    rmSync(dir, { recursive: true, force: true });
  });
});
