// translateError's reading of a driver's errors that carry no SQLSTATE.
import { describe, expect, it } from 'vitest';
import { translateError } from '../src/errors.js';

describe('translateError', () => {
  it("reads node-postgres's broken-client errors as database_unavailable", () => {
    // A user's own pool with an 'error' listener (README): a statement on a client that broke fails so.
    for (const message of ['Client has encountered a connection error and is not queryable', 'Connection terminated unexpectedly']) {
      expect(translateError(new Error(message))).toMatchObject({ code: 'database_unavailable', message: `database unavailable: ${message}` });
    }
  });
});
