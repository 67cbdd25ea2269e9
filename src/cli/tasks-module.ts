import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PgDrainError } from '../errors.js';
import type { TaskMap } from '../types.js';

/** Imports a tasks module (a path, or a package name) and returns its exports. */
export async function loadTasks(specifier: string): Promise<TaskMap> {
  const path = resolve(specifier);
  const target = existsSync(path) ? pathToFileURL(path).href : specifier;
  if (!existsSync(path) && (specifier.startsWith('.') || specifier.startsWith('/'))) {
    throw new PgDrainError('tasks_module', `tasks module not found: ${path}`, { field: '--tasks' });
  }
  try {
    return (await import(target)) as TaskMap;
  } catch (error) {
    throw new PgDrainError('tasks_module', `cannot load tasks module ${specifier}: ${(error as Error).message}`,
      { field: '--tasks', cause: error });
  }
}
