// The driver contract on PGlite (pgliteDriver), the embedded default: real
// PostgreSQL compiled to WebAssembly, in memory here.
import { pgliteDriver } from '../../src/db/pglite.js';
import { migrate } from '../../src/migrate.js';
import { driverContract } from './contract.js';

driverContract('PGlite', { sessions: true, network: false }, async () => {
  const driver = await pgliteDriver();
  await migrate(driver);
  return { driver, emptyDatabase: () => pgliteDriver() };
});
