#!/usr/bin/env node
// The pgdrain command's entry (bundled as dist/cli.mjs). A drain woken by a
// CronJob or a Lambda pays the CLI's start-up each time: its first connection
// opens here, before the rest of the CLI loads, so the two overlap.
import { holdEarlyStops } from './signals.js';

// First, before pg and the rest load (dynamic imports, so they evaluate only
// now): a kubelet's SIGTERM during start-up stops the drain (or serve), not the process.
holdEarlyStops(process.argv);
const { connectEarly } = await import('./connect.js');
connectEarly(process.argv);
await import('./main.js');
