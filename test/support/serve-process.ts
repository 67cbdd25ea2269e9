// `pgdrain serve` as a child process of the built CLI (run `npm run build`
// first) on a free port of 127.0.0.1, for the tests of the CLI's server.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CLI } from './drain-process.js';

/** Starts `pgdrain serve --port 0 ...args` with DATABASE_URL and env; url resolves once it listens, rejects if it exits first. */
export function startServe(databaseUrl: string, args: string[], env: Record<string, string>, cwd?: string) {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', ...args],
    { cwd, env: { ...process.env, DATABASE_URL: databaseUrl, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const url = new Promise<string>((done, fail) => {
    child.stderr.on('data', (c) => {
      stderr += c;
      const m = /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (m) done(m[1]!);
    });
    void exited.then((code) => fail(new Error(`serve exited ${code}: ${stderr}`)));
  });
  return { child, url, exited, stderr: () => stderr };
}
