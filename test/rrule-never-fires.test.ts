// jobs.schedule's refusal of a rule with no occurrence after now says why
// for one without COUNT or UNTIL too: none comes within a century (as
// jobs.cron_next searches). Before, it said "COUNT or UNTIL ended it" of a
// rule that has neither.
import { describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

describe('a rule that never fires, without COUNT or UNTIL', () => {
  it('is refused naming cron, saying none comes within a century (not that COUNT or UNTIL ended it)', async () => {
    await expect(sql(`select jobs.schedule('n', 'FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30', 'n.run')`)).rejects.toMatchObject({
      code: 'PDC01', column: 'cron',
      message: expect.stringMatching(/has no occurrence after .* \(COUNT or UNTIL ended it, or none comes within a century\)/) });
  });
});
