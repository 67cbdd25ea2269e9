// Years ahead of the real clock whatever year the tests run in. A test that
// needs "the future" against now() or Date.now() (a runAt, an expiry, a retry
// time a drain must not reach), or whose injected clock must be ahead of the
// time its jobs were published at with the real one, takes its year from
// here, not a fixed one, which the real clock passes one day and the test
// with it.

/** Whether the two years have one calendar: the same weekday on each date, leap or not alike. */
function sameCalendar(a: number, b: number): boolean {
  const leap = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  return leap(a) === leap(b) && new Date(Date.UTC(a, 0, 1)).getUTCDay() === new Date(Date.UTC(b, 0, 1)).getUTCDay();
}

/**
 * `year` while the real clock is more than a year before it; after, the first
 * year that is and has its calendar (2030: 2041, then 2047...). A test written
 * for `year` keeps its weekdays, and the dates of the Sunday-based DST changes.
 */
export function yearLike(year: number): number {
  let y = Math.max(year, new Date().getUTCFullYear() + 2);
  while (!sameCalendar(y, year)) y++;
  return y;
}
