import type { Driver } from '../../src/db/driver.js';

/**
 * driver with its statements counted by the jobs function they call (or
 * their text) into counts: a counter, not a stand-in (every query still
 * runs); close() leaves the shared driver open.
 */
export function countingDriver(driver: Driver, counts: Map<string, number>): Driver {
  return {
    ...driver, close: async () => {},
    query: (text, params, options) => {
      const key = /jobs\.(\w+)/.exec(text)?.[1] ?? text;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      return driver.query(text, params, options);
    },
  } as Driver;
}
