import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PgDrainError } from '../errors.js';
import { taskNames } from '../tasks.js';
import type { TaskMap } from '../types.js';

/**
 * Imports a tasks module (a path, or a package name) and returns its exports;
 * fails if it has not loaded within withinMs (a top-level await that never
 * settles would otherwise end the process with Node's exit code 13, silently).
 */
export async function loadTasks(specifier: string, withinMs = 60_000): Promise<TaskMap> {
  const path = resolve(specifier);
  const target = existsSync(path) ? pathToFileURL(path).href : specifier;
  if (!existsSync(path) && (specifier.startsWith('.') || specifier.startsWith('/'))) {
    throw new PgDrainError('tasks_module', `tasks module not found: ${path}`, { field: '--tasks' });
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`it had not finished loading after ${withinMs / 1000} s (a top-level await that never settles?)`)),
                       withinMs);
  });
  let tasks: TaskMap;
  try {
    tasks = (await Promise.race([import(target), late])) as TaskMap;
  } catch (error) {
    const why = error instanceof Error ? error.message + typeScriptHint(specifier, error) : `it threw ${JSON.stringify(error) ?? String(error)}`;
    throw new PgDrainError('tasks_module', `cannot load tasks module ${specifier}: ${why}`, { field: '--tasks', cause: error });
  } finally {
    clearTimeout(timer);
  }
  // A drain would claim jobs only to fail each as an unknown task, spending its retries.
  if (taskNames(tasks).length === 0) {
    const exported = Object.keys(tasks).join(', ') || 'nothing';
    throw new PgDrainError('tasks_module', `tasks module ${specifier} serves no tasks (it exports ${exported}): `
      + 'export handler functions, objects of them, or defineTask() results', { field: '--tasks' });
  }
  return tasks;
}

/** What to do with a TypeScript tasks module, which Node 20 cannot import by itself. */
function typeScriptHint(specifier: string, error: Error): string {
  if ((error as { code?: unknown }).code !== 'ERR_UNKNOWN_FILE_EXTENSION' || !/\.[cm]?ts$/.test(specifier)) return '';
  return " (a TypeScript module: compile it to JavaScript first and give that, or load a TypeScript loader: NODE_OPTIONS='--import tsx')";
}
