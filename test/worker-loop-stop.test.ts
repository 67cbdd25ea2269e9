// deploy/worker-loop.sh stopped at any moment, under dash (Debian's /bin/sh),
// bash and busybox ash (Alpine's /bin/sh; Debian's package busybox): the running drain gets each stop once. The drain here is
// test/fixtures/fake-bin/pgdrain, which ends at once until armed: the loop
// forks drain after drain, and the SIGTERM lands at a random point of that
// cycle, often between a fork and its exec. (The real CLI under the loop:
// worker-loop.test.ts.)
import { afterEach, describe, expect, it } from 'vitest';
import { sleep, until } from './support/drain-process.js';
import { SHELLS, loop, running } from './support/loop-process.js';

const RUNS = 100;
afterEach(() => { // a failed or timed-out test leaves no loop forking drains behind
  for (const child of running) child.kill('SIGKILL');
  running.clear();
});

describe.each(SHELLS)('under %s', (shell) => {
  it(`a SIGTERM at any moment reaches the running drain, once (${RUNS} stops)`, async () => {
    for (let run = 0; run < RUNS; run++) {
      const p = loop(shell);
      await until(async () => p.ran(), 'the loop to run drains', 30_000, 2); // its trap is set
      await sleep(Math.random() * 20); // drains started and ended meanwhile
      p.arm();
      p.child.kill('SIGTERM');
      const exit = await p.exited;
      const log = p.log();
      p.done();
      // A drain that set its trap got the stop once; one that had not yet died of it (143), as a drain does
      // before the CLI listens; none was started after the stop.
      expect({ run, log, code: exit.code }).toEqual({ run, code: log.length ? 0 : expect.toBeOneOf([0, 143]),
        log: log.length ? ['start', 'term'] : [] });
    }
  }, 180_000);

  it.each(['SIGHUP', 'SIGQUIT'] as const)('%s is a stop too: the loop does not die leaving its drain running on (a day), unstopped', async (signal) => {
    const p = loop(shell);
    p.arm();
    await until(async () => p.log().includes('start'), 'the drain to start');
    p.child.kill(signal);
    const exit = await p.exited;
    expect({ code: exit.code, signal: exit.signal, log: p.log() }).toEqual({ code: 0, signal: null, log: ['start', 'term'] });
    p.done();
  });

  it('a drain that the stop ends with exit 1 ends the loop with exit 1, with no back-off', async () => {
    const p = loop(shell, { FAKE_EXIT: '1' });
    p.arm();
    await until(async () => p.log().includes('start'), 'the drain to start');
    p.child.kill('SIGTERM');
    const exit = await p.exited;
    expect({ code: exit.code, log: p.log(), stderr: exit.stderr }).toEqual({ code: 1, log: ['start', 'term'], stderr: '' });
    p.done();
  });
});

it('with no writable TMPDIR (a read-only root filesystem) the loop runs no drain and exits 2 naming TMPDIR', async () => {
  const p = loop('sh', { TMPDIR: '/nonexistent-pgdrain-tmp' });
  const exit = await p.exited;
  expect({ code: exit.code, ran: p.ran() }).toEqual({ code: 2, ran: false });
  expect(exit.stderr).toMatch(/^worker-loop: TMPDIR: must be a writable directory, got \/nonexistent-pgdrain-tmp \(/m);
  p.done();
});
