// Options publish and publishBulk must refuse before any statement: checked
// on a queue whose database does not answer (a check that sent a statement
// would fail to connect instead, not name the option).
import { expect } from 'vitest';
import { createQueue } from '../../src/index.js';

/** Each [options, field, rule]: publish names options.X, publishBulk the job's jobs[1].X. */
export async function expectRefusedBeforeAnyStatement(bad: readonly (readonly [object, string, RegExp])[]): Promise<void> {
  const offline = createQueue({ connectionString: 'postgres://postgres@127.0.0.1:1/none', tasks: {} });
  try {
    for (const [options, field, message] of bad) {
      await expect(offline.publish('t', null, options as never), JSON.stringify(options))
        .rejects.toMatchObject({ name: 'ValidationError', field, message: expect.stringMatching(message) });
      await expect(offline.publishBulk([{ task: 't' }, { task: 't', ...options } as never]), JSON.stringify(options))
        .rejects.toMatchObject({ name: 'ValidationError', field: field.replace('options', 'jobs[1]') });
    }
  } finally {
    await offline.close();
  }
}
