import * as neonModule from '@neondatabase/serverless';
import type { Driver } from './driver.js';
import { neonHttpDriverOf } from './neon-drivers.js';

// Which queue operations run over HTTP: every one. Each is one SQL statement
// with parameters (publish, publishBulk, drain's claim_json and settle,
// jobs.ack / nack / release, stats), and one statement needs no session.
// What needs the WebSocket Pool (neonDriver) or pg instead:
// - migrate(): one transaction, an advisory lock, multi-statement scripts;
// - queue.using(tx) inside your own transaction;
// - a text of several statements: Neon's HTTP endpoint prepares each query.
// driver.transaction() therefore refuses, naming the driver to use.

/** Options of the Neon HTTP driver. */
export interface NeonHttpDriverOptions {
  /**
   * Where to POST queries instead of Neon's `https://api.<host>/sql`, e.g. a
   * local endpoint in tests. Sets neonConfig.fetchEndpoint, which is global
   * to the isolate.
   */
  fetchEndpoint?: string | undefined;
}

/**
 * A driver over @neondatabase/serverless's `neon()`: each statement is one
 * HTTPS request, with no connection to open or close. The fastest way from a
 * Worker or a Lambda to Neon for draining and publishing; see the comment at
 * the top of this file for what needs a session instead.
 */
export function neonHttpDriver(connectionString: string, options: NeonHttpDriverOptions = {}): Driver {
  return neonHttpDriverOf(neonModule, connectionString, options);
}
