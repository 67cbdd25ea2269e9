// The embedded database (PGlite) is one process's: two processes opening the
// same directory each keep their own copy in memory and write it back, so the
// jobs one of them published are lost. A lock file holding the pid keeps a
// second process out, with an error that says what to do instead. The file
// also holds the process's start time (Linux), so a pid the system has given
// to another process since (in a container, the CLI is always pid 1) does
// not keep the lock for ever after a kill -9.
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PgDrainError } from '../errors.js';

/** Takes dir for this process (creating it); returns the release. Throws database_unavailable while another holds it. */
export function lockEmbedded(dir: string): () => void {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'pgdrain.lock');
  for (let attempt = 1; ; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      try {
        writeSync(fd, `${process.pid} ${startTime(process.pid) ?? ''}`.trim());
      } finally {
        closeSync(fd);
      }
      return () => unlinkQuietly(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const pid = holder(file);
      if (pid !== undefined || attempt === 2) {
        throw new PgDrainError('database_unavailable', `the embedded database in ${dir} is in use by ` +
          `${pid === undefined ? 'another process' : `process ${pid}`}: it serves one process at a time ` +
          '(for several, give them a PostgreSQL with DATABASE_URL)');
      }
      unlinkQuietly(file); // left by a process that is gone
    }
  }
}

/** The live process named in the lock file, or undefined (gone, or no file). */
function holder(file: string): number | undefined {
  let pid: number;
  let started: string | undefined;
  try {
    const [first, second] = readFileSync(file, 'utf8').trim().split(/\s+/);
    pid = Number(first);
    started = second;
  } catch {
    return undefined;
  }
  // Our own pid: the file is a previous process's that had it (we hold nothing yet).
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  // Alive; the same process only if it started when the holder did (where that is known).
  const now = started === undefined ? undefined : startTime(pid);
  return now !== undefined && now !== started ? undefined : pid;
}

/** When process pid started, in clock ticks since boot (Linux /proc), or undefined. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces), from field 3: start time is field 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}
