// deploy/worker-loop.sh when what it runs goes wrong, under dash, bash and
// busybox ash, with test/fixtures/fake-bin's pgdrain (support/loop-process.ts):
// a pgdrain it cannot run (retried a few times), a back-off after a long healthy run, a drain that
// ignores its SIGTERM. (Stops at random moments: worker-loop-stop.test.ts.)
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { until } from './support/drain-process.js';
import { FAKE_BIN, FAKE_CLOCK, SHELLS, loop, running } from './support/loop-process.js';

afterEach(() => {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
});
// A `pgdrain` that is there but not executable (no x bit: root cannot exec it either).
const noExec = mkdtempSync(join(tmpdir(), 'pgdrain-noexec-'));
writeFileSync(join(noExec, 'pgdrain'), '#!/bin/sh\nexit 0\n');
chmodSync(join(noExec, 'pgdrain'), 0o644);
afterAll(() => rmSync(noExec, { recursive: true, force: true }));

/** How the loop ends: its exit, or, if it backs off to retry instead, SIGKILLed then (code null). */
async function endOrBackOff(p: ReturnType<typeof loop>) {
  let ended = false;
  void p.exited.then(() => (ended = true));
  await until(async () => ended || p.stderr().includes('next drain in'), 'the loop to end or back off');
  p.child.kill('SIGKILL');
  return p.exited;
}

describe.each(SHELLS)('under %s', (shell) => {
  it('pgdrain not executable (exit 126): retried 5 times (fake clock), saying so each time, then exit 2', async () => {
    // (Not found, 127, the same: worker-loop-settings.test.ts.)
    const p = loop(shell, { PATH: `${FAKE_CLOCK}:${noExec}:/usr/bin:/bin` });
    writeFileSync(join(p.dir, 'clock'), '1000000\n');
    const exit = await endOrBackOff(p);
    const log = p.log();
    p.done();
    expect({ code: exit.code, log }).toEqual({ code: 2, log: ['sleep 5', 'sleep 10', 'sleep 20', 'sleep 40', 'sleep 80'] });
    expect(exit.stderr).toMatch(/^worker-loop: pgdrain drain exited 126, found but not executable: chmod \+x it, .*; retry 1 of 5 in 5 s$/m);
    expect(exit.stderr).toMatch(/^worker-loop: pgdrain drain exited 126, found but not executable: chmod \+x it, .*; retried 5 times, giving up$/m);
    expect(exit.stderr).not.toContain('next drain in');
  });

  it('the back-off starts again from 10 s after a failed drain that ran longer than it (fake clock)', async () => {
    const p = loop(shell, { PATH: `${FAKE_CLOCK}:${FAKE_BIN}:${process.env.PATH}` });
    // Before the loop's first `date`: the clock, and drains that fail (exit 1) after 0 s, three times, then after
    // 100 s (over the 80 s the back-off has reached), then at once again; then none left (exit 2) ends the loop.
    writeFileSync(join(p.dir, 'clock'), '1000000\n');
    writeFileSync(join(p.dir, 'plan'), '0 1\n0 1\n0 1\n100 1\n0 1\n');
    const exit = await p.exited;
    const log = p.log();
    p.done();
    expect({ code: exit.code, log }).toEqual({ code: 2, log: ['drain 0', 'sleep 10', 'drain 0', 'sleep 20', 'drain 0', 'sleep 40',
      'drain 100', 'sleep 10', 'drain 0', 'sleep 20'] });
  });

  it('a stop just after the back-off, as the next drain starts, ends the loop with the failed drain\'s exit 1, not 0 (fake clock)', async () => {
    // The loop's `date`s: 1 before the first drain, 2 after it (its run's length), 3 before the next: stopped there.
    const p = loop(shell, { PATH: `${FAKE_CLOCK}:${FAKE_BIN}:${process.env.PATH}`, FAKE_DATE_STOP: '3' });
    writeFileSync(join(p.dir, 'clock'), '1000000\n');
    writeFileSync(join(p.dir, 'plan'), '0 1\n0 1\n');
    const exit = await p.exited;
    expect({ code: exit.code, log: p.log() }).toEqual({ code: 1, log: ['drain 0', 'sleep 10'] });
    p.done();
  });

  it('a stop just after a 126 retry\'s pause, as the next try starts, ends the loop with exit 2, not 0 (fake clock)', async () => {
    // The loop's `date`s: 1 before the first try, 2 before the second: stopped there.
    const p = loop(shell, { PATH: `${FAKE_CLOCK}:${noExec}:/usr/bin:/bin`, FAKE_DATE_STOP: '2' });
    writeFileSync(join(p.dir, 'clock'), '1000000\n');
    const exit = await p.exited;
    expect({ code: exit.code, log: p.log() }).toEqual({ code: 2, log: ['sleep 5'] });
    p.done();
  });

  it('a drain that ignores its SIGTERM is SIGKILLed by the loop after --grace + --overrun + 5 s: exit 137, saying why', async () => {
    const p = loop(shell, { FAKE_HANG: '1' }, ['--json', '--grace', '0', '--overrun=0']);
    p.arm();
    await until(async () => p.log().includes('start'), 'the drain to start');
    p.child.kill('SIGTERM');
    const exit = await p.exited;
    const drainPid = Number(readFileSync(join(p.dir, 'pid'), 'utf8'));
    expect({ code: exit.code, log: p.log() }).toEqual({ code: 137, log: ['start', 'term'] }); // one SIGTERM, then SIGKILL
    expect(exit.stderr).toMatch(/^worker-loop: the drain did not end within 5 s of its SIGTERM \(--grace 0, --overrun 0, \+ 5 s\): a handler ignores its signal; sent SIGKILL \(the jobs it held come back when their lease ends\)$/m);
    expect(() => process.kill(drainPid, 0)).toThrow(/ESRCH/); // not left running on behind the loop
    p.done();
  });

  it('a drain that ends by itself as the kill is due (not yet reaped) is not said to be SIGKILLed: exit 0, no such line', async () => {
    const p = loop(shell, { FAKE_HANG: '1' }, ['--grace', '0', '--overrun', '0']);
    p.arm();
    await until(async () => p.log().includes('start'), 'the drain to start');
    p.child.kill('SIGTERM');
    await until(async () => p.log().includes('term'), 'the drain to get its SIGTERM');
    // The loop, stopped, reaps nothing: the drain that ends now stays a zombie, still there to kill -0, as it is
    // for a moment on a busy machine before the loop's wait returns. Then the watchdog's time comes, and it ends.
    p.child.kill('SIGSTOP');
    writeFileSync(join(p.dir, 'end'), '');
    const states = () => readFileSync(`/proc/${p.child.pid}/task/${p.child.pid}/children`, 'utf8').trim().split(/\s+/)
      .filter(Boolean).map((pid) => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0]);
    await until(async () => { const s = states(); return s.length === 2 && s.every((state) => state === 'Z'); },
      'the drain and the watchdog to end', 30_000);
    p.child.kill('SIGCONT');
    const exit = await p.exited;
    expect({ code: exit.code, log: p.log(), killed: exit.stderr.match(/^worker-loop: .*SIGKILL.*$/m)?.[0] })
      .toEqual({ code: 0, log: ['start', 'term'], killed: undefined });
    p.done();
  });
});

it('the kill waits for the grace and overrun of PGDRAIN_GRACE_SECONDS / PGDRAIN_OVERRUN_SECONDS, a flag over its variable, rounded up', async () => {
  const p = loop('sh', { FAKE_HANG: '1', PGDRAIN_GRACE_SECONDS: '100', PGDRAIN_OVERRUN_SECONDS: '0' }, ['--grace', '0.5']);
  p.arm();
  await until(async () => p.log().includes('start'), 'the drain to start');
  p.child.kill('SIGTERM');
  const exit = await p.exited;
  expect(exit.code).toBe(137);
  expect(exit.stderr).toContain('did not end within 6 s of its SIGTERM (--grace 0.5, --overrun 0, + 5 s)');
  p.done();
});
