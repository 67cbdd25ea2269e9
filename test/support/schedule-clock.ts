// The fixed clock schedule tests pass as `now` (jobs.schedule, publish_due_schedules, claim_json): T0, a
// Tuesday at midnight UTC, and minute(k), k minutes after it, as ISO text. Only injected, never compared
// with the real clock (test/support/future-year.ts is for tests that do).
export const T0 = '2030-01-01T00:00:00Z';
export const minute = (k: number): string => new Date(Date.parse(T0) + k * 60_000).toISOString();
