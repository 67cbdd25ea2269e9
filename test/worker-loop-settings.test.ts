// deploy/worker-loop.sh's own reading of the drain's settings, and its
// pauses, under dash, bash and busybox ash, with test/fixtures/fake-bin's
// pgdrain and fake-clock's date and sleep (support/loop-process.ts): --grace
// and --overrun read by the CLI's rule for them, the minimum interval between
// drains that end at once, pgdrain not found retried.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { seconds } from '../src/cli/flag-parsers.js';
import { until } from './support/drain-process.js';
import { FAKE_BIN, FAKE_CLOCK, SHELLS, loop, running } from './support/loop-process.js';

afterEach(() => {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
});
const SLEEP = execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim();
const CLOCKED = { PATH: `${FAKE_CLOCK}:${FAKE_BIN}:${process.env.PATH}` };

/** The CLI's reading of a --grace value (main.ts: seconds(0, 3600)): its seconds, or its refusal. */
function cliGrace(value: string): number | string {
  try {
    return seconds(0, 3600)(value);
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * The loop with a drain that ignores its SIGTERM, on the fake clock (its watchdog's seconds pass at once):
 * how long after the SIGTERM it SIGKILLs the drain, from its line saying so; or its exit and stderr when it
 * refuses the settings before running any drain.
 */
async function killAfter(shell: string, env: Record<string, string>, args: string[]) {
  const p = loop(shell, { ...CLOCKED, FAKE_HANG: '1', FAKE_SLEEP: SLEEP, ...env }, args);
  writeFileSync(join(p.dir, 'clock'), '1000000\n');
  p.arm();
  let exited = false;
  void p.exited.then(() => (exited = true));
  await until(async () => exited || p.log().includes('start'), 'the drain to start, or the loop to end');
  if (!exited) p.child.kill('SIGTERM');
  const exit = await p.exited;
  const ran = p.log().includes('start');
  p.done();
  const within = exit.stderr.match(/did not end within (\d+) s of its SIGTERM/)?.[1];
  return ran ? { code: exit.code, limit: within === undefined ? exit.stderr : Number(within) } : { code: exit.code, stderr: exit.stderr };
}

// The forms the CLI takes (blanks around, exponents, a bare point) and some it refuses (3600 + 5 fake seconds
// would take the watchdog longer than the fake drain's 30 s: the upper bound is 3600.5, refused).
const FORMS = [' 5', '5\t', '\n1e1 ', '1E+1', '.5', '5.', '0.5e1', '00010', '36e-1', '0.036e2', '-0', '0e99999', '0.0001',
               '5s', '1e', '+5', '--5', '3600.5', '1e4', '0x10', '-1', '1.2.3', 'ten'];

describe.each(SHELLS)('under %s', (shell) => {
  it('reads --grace by the CLI\'s rule: kills after its value rounded up + --overrun 0 + 5 s, or exits 2 at once naming it', async () => {
    const seen: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const form of FORMS) {
      const cli = cliGrace(form);
      seen[form] = await killAfter(shell, {}, ['--overrun', '0', '--grace', form]);
      expected[form] = typeof cli === 'number' ? { code: 137, limit: Math.ceil(cli) + 5 }
        : { code: 2, stderr: `worker-loop: --grace: ${cli}, got "${form}"\n` };
    }
    expect(seen).toEqual(expected);
  }, 120_000);

  it('reads PGDRAIN_GRACE_SECONDS and PGDRAIN_OVERRUN_SECONDS the same way; a blank one is refused as the CLI does', async () => {
    expect(await killAfter(shell, { PGDRAIN_GRACE_SECONDS: ' 2.5 ', PGDRAIN_OVERRUN_SECONDS: '1e0' }, []))
      .toEqual({ code: 137, limit: 3 + 1 + 5 });
    expect(await killAfter(shell, { PGDRAIN_OVERRUN_SECONDS: '5 s' }, []))
      .toEqual({ code: 2, stderr: 'worker-loop: PGDRAIN_OVERRUN_SECONDS: must be a number of seconds from 0 to 3600, got "5 s"\n' });
    expect(await killAfter(shell, { PGDRAIN_GRACE_SECONDS: ' ' }, []))
      .toEqual({ code: 2, stderr: 'worker-loop: PGDRAIN_GRACE_SECONDS: is set but empty: give a value or unset it\n' });
    // A flag wins over its variable, which is then not read (the CLI's rule too).
    expect(await killAfter(shell, { PGDRAIN_GRACE_SECONDS: '' }, ['--grace=0', '--overrun=0'])).toEqual({ code: 137, limit: 5 });
  }, 60_000);

  it('a drain that ends under PGDRAIN_LOOP_MIN_SECONDS after its start is followed that long after its start, not at once', async () => {
    const p = loop(shell, { ...CLOCKED, PGDRAIN_LOOP_MIN_SECONDS: '5' });
    writeFileSync(join(p.dir, 'clock'), '1000000\n');
    // Drains that end (exit 0) after 0, 3, 5 and 9 s; then none left (exit 2) ends the loop.
    writeFileSync(join(p.dir, 'plan'), '0 0\n3 0\n5 0\n9 0\n');
    const exit = await p.exited;
    const log = p.log();
    p.done();
    expect({ code: exit.code, log, stderr: exit.stderr })
      .toEqual({ code: 2, log: ['drain 0', 'sleep 5', 'drain 3', 'sleep 2', 'drain 5', 'drain 9'], stderr: '' });
  });

  it('PGDRAIN_LOOP_MIN_SECONDS with leading zeros is decimal (010: 10 s, 09: 9 s), not octal nor an arithmetic error', async () => {
    for (const [min, pause] of [['010', 'sleep 10'], ['09', 'sleep 9'], ['00', undefined]] as const) {
      const p = loop(shell, { ...CLOCKED, PGDRAIN_LOOP_MIN_SECONDS: min });
      writeFileSync(join(p.dir, 'clock'), '1000000\n');
      writeFileSync(join(p.dir, 'plan'), '0 0\n');
      const exit = await p.exited;
      const log = p.log();
      p.done();
      expect({ min, code: exit.code, log, stderr: exit.stderr })
        .toEqual({ min, code: 2, log: pause ? ['drain 0', pause] : ['drain 0'], stderr: '' });
    }
  });

  it('PGDRAIN_LOOP_MIN_SECONDS is a whole number of seconds, else the loop runs no drain and exits 2 naming it', async () => {
    const blank = loop(shell, { PGDRAIN_LOOP_MIN_SECONDS: '' }); // set but empty: refused, as a blank PGDRAIN_* is
    const blankExit = await blank.exited;
    expect({ code: blankExit.code, ran: blank.ran(), stderr: blankExit.stderr }).toEqual({ code: 2, ran: false,
      stderr: 'worker-loop: PGDRAIN_LOOP_MIN_SECONDS: is set but empty: give a value or unset it\n' });
    blank.done();

    const p = loop(shell, { PGDRAIN_LOOP_MIN_SECONDS: '0.5' });
    const exit = await p.exited;
    expect({ code: exit.code, ran: p.ran(), stderr: exit.stderr }).toEqual({ code: 2, ran: false,
      stderr: 'worker-loop: PGDRAIN_LOOP_MIN_SECONDS: must be a whole number of seconds from 0 to 9999, got "0.5"\n' });
    p.done();
  });

  it('pgdrain not found (exit 127, an npm ci replacing node_modules) is retried after 5, 10, 20, 40, 80 s, then the loop exits 2', async () => {
    expect(existsSync('/usr/bin/pgdrain') || existsSync('/bin/pgdrain')).toBe(false);
    const gone = `${FAKE_CLOCK}:/usr/bin:/bin`;
    const p = loop(shell, { PATH: gone });
    writeFileSync(join(p.dir, 'clock'), '1000000\n');
    const exit = await p.exited;
    const log = p.log();
    p.done();
    const lines = exit.stderr.split('\n').filter((l) => l.startsWith('worker-loop:'));
    const why = `pgdrain drain exited 127, not found: put the directory with pgdrain (node_modules/.bin) and node on PATH (PATH=${gone})`;
    expect({ code: exit.code, log, lines }).toEqual({ code: 2, log: ['sleep 5', 'sleep 10', 'sleep 20', 'sleep 40', 'sleep 80'],
      lines: [1, 2, 3, 4, 5].map((n) => `worker-loop: ${why}; retry ${n} of 5 in ${5 * 2 ** (n - 1)} s`)
        .concat(`worker-loop: ${why}; retried 5 times, giving up`) });
  });

  it('a stop during a retry\'s pause ends the loop at once, exit 2 as when it gives up (127 would read as the loop not found)', async () => {
    // A pause that only the stop can end (its sleep 600 s); the watchdog's `sleep 1`s are real.
    const bin = mkdtempSync(join(tmpdir(), 'pgdrain-long-pause-'));
    writeFileSync(join(bin, 'sleep'), `#!/bin/sh\n[ "$1" != 1 ] || exec ${SLEEP} 1\necho "sleep $1" >> "$FAKE_DIR/log"\nexec ${SLEEP} 600\n`,
      { mode: 0o755 });
    const p = loop(shell, { PATH: `${bin}:/usr/bin:/bin` });
    await until(async () => p.log().includes('sleep 5'), 'the first retry\'s pause');
    p.child.kill('SIGTERM');
    const exit = await p.exited;
    const log = p.log();
    p.done();
    rmSync(bin, { recursive: true, force: true });
    const lines = exit.stderr.split('\n').filter((l) => l.startsWith('worker-loop:'));
    expect({ code: exit.code, log, lines }).toEqual({ code: 2, log: ['sleep 5'],
      lines: [expect.stringMatching(/^worker-loop: pgdrain drain exited 127, not found: .*; retry 1 of 5 in 5 s$/)] });
  });
});
