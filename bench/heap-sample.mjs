// Preloaded into a measured `pgdrain drain` (node --expose-gc --import):
// on SIGUSR2 it collects garbage and appends one JSON line to HEAP_OUT, the
// heap used (MB), the RSS and the process's active handles and timers.
import { appendFileSync } from 'node:fs';

process.on('SIGUSR2', () => {
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  const resources = {};
  for (const r of process.getActiveResourcesInfo()) resources[r] = (resources[r] ?? 0) + 1;
  appendFileSync(process.env.HEAP_OUT, `${JSON.stringify({ heapMB: +(m.heapUsed / 2 ** 20).toFixed(2), rssMB: +(m.rss / 2 ** 20).toFixed(1), resources })}\n`);
});
