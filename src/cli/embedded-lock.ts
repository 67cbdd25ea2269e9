// The embedded database (PGlite) is one process's: two processes opening the
// same directory each keep their own copy in memory and write it back, so the
// jobs one of them published are lost. A lock file holding the pid keeps a
// second process out, with an error that says what to do instead.
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
        writeSync(fd, String(process.pid));
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
  try {
    pid = Number(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}
