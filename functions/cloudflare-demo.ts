/**
 * This repository's Worker (wrangler.toml `main`): createWorker around the
 * demo tasks of examples/tasks.ts. Its own entry so that `pgdrain/cloudflare`
 * carries no default export, and a user's Worker bundles only their tasks.
 */
import * as demoTasks from '../examples/tasks.js';
import { createWorker } from './cloudflare.js';

export default createWorker(demoTasks);
