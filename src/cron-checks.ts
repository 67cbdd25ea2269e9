// Cron expressions and time zones checked in TypeScript (croner, Intl)
// before any round trip, with the grammar and daylight saving rules the
// database's evaluator (sql/0019_cron.sql) and pg_cron use.
import { Cron } from 'croner';
import { ValidationError } from './errors.js';

// Each field's name, and the largest step croner takes in it.
const FIELDS = [['minute', 60], ['hour', 24], ['day-of-month', 31], ['month', 12], ['day-of-week', 7]] as const;
const MACROS = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);
// One list item of a field, as the database evaluator reads it; croner
// knows more (L, W, #, ?, seconds), which the database does not.
const ITEM = /^(\*|\d{1,4}|[a-z]{3})(-(\d{1,4}|[a-z]{3}))?(\/\d{1,4})?$/i;

// An RFC 5545 recurrence rather than a cron expression, told apart as the
// database (jobs.is_rrule) and pg-boss tell them: a FREQ= part, or a line
// that opens with a property name and ; or : (DTSTART:, RRULE:).
const RRULE_SHAPE = /^[ \t]*[a-z][a-z0-9-]*[;:]|(?:^|[\s;])FREQ=/im;

/** Whether `expr` is an RFC 5545 recurrence rule ('FREQ=DAILY;BYHOUR=9'), which schedules take where they take cron. */
export function isRrule(expr: string): boolean {
  return RRULE_SHAPE.test(expr);
}

/**
 * Checks a cron expression with croner and returns it trimmed; throws a
 * ValidationError naming `field` when it is malformed or never fires. A
 * recurrence rule (isRrule) is returned trimmed as it is: the database
 * parses and checks it (sql/0037_rrule.sql), naming the part at fault.
 */
export function checkCron(expr: unknown, field = 'cron'): string {
  if (typeof expr === 'string' && isRrule(expr)) {
    if (expr.length > 4000) throw new ValidationError(field, 'must be a recurrence rule of at most 4000 characters');
    return expr.trim();
  }
  if (typeof expr !== 'string' || expr.trim() === '' || expr.length > 200) {
    throw new ValidationError(field, "must be a cron expression of at most 200 characters, such as '*/5 * * * *'");
  }
  const text = expr.trim();
  const parts = text.split(/\s+/);
  if (!MACROS.has(text.toLowerCase()) && (parts.length !== 5 || !parts.every((p) => p.split(',').every((item) => ITEM.test(item))))) {
    throw new ValidationError(field, 'must have 5 fields (minute hour day-of-month month day-of-week) of *, values, ' +
      `ranges, lists and /steps, or be @hourly, @daily, @weekly, @monthly or @yearly, got '${text.slice(0, 80)}'`);
  }
  // croner reads sun at a range's end as 7 (sat-sun: both days); the
  // database, as Vixie cron, reads it as 0: a range that goes down.
  const downToSunday = parts.length === 5 ? parts[4]!.split(',').find((item) => /^(mon|tue|wed|thu|fri|sat)-sun\b/i.test(item)) : undefined;
  if (downToSunday) {
    throw new ValidationError(field, `day-of-week field '${downToSunday}' is a range that goes down: sun is 0 (write 6-7, or sat,sun)`);
  }
  // As the database words it (croner's own message says "illegal stepping").
  for (const [i, part] of (parts.length === 5 ? parts : []).entries()) {
    const zero = part.split(',').find((item) => /^(\*|\w+-\w+)\/0+$/.test(item));
    if (zero) throw new ValidationError(field, `${FIELDS[i]![0]} field '${zero}': the step must be 1 or more (in '${text.slice(0, 80)}')`);
  }
  // As the database words them: croner names its own parsed value (month 13 as 12, day 0 as -1).
  for (const [i, part] of (parts.length === 5 ? parts : []).entries()) {
    const wrong = part.split(',').map((item) => [item, rangeFault(item, i)] as const).find(([, fault]) => fault);
    if (wrong) throw new ValidationError(field, `${FIELDS[i]![0]} field '${wrong[0]}' ${wrong[1]} (in '${text.slice(0, 80)}')`);
  }
  let cron: Cron;
  try {
    cron = croner(text);
  } catch (error) {
    throw new ValidationError(field, `is not a valid cron expression: ${(error as Error).message}`);
  }
  if (!cron.nextRun()) throw new ValidationError(field, `'${text}' never fires: no date matches it`);
  return text;
}

// Each field's values, and the names it takes (a month's from 1, a day's from 0).
const BOUNDS = [[0, 59], [0, 23], [1, 31], [1, 12], [0, 7]] as const;
const NAMES: readonly (readonly string[] | undefined)[] = [undefined, undefined, undefined,
  ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'],
  ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']];

/** What is wrong with one list item (ITEM's shape) of field i, as jobs.cron_next says it, or undefined. */
function rangeFault(item: string, i: number): string | undefined {
  const [, from = '*', , to] = ITEM.exec(item) ?? [];
  if (from === '*') return undefined;
  const [lo, hi] = BOUNDS[i]!;
  const value = (token: string) => {
    if (/^\d+$/.test(token)) return Number(token);
    const at = NAMES[i]?.indexOf(token.toLowerCase()) ?? -1;
    return at < 0 ? NaN : at + (i === 3 ? 1 : 0);
  };
  const a = value(from);
  const b = to === undefined ? a : value(to);
  if (b < a) return 'is a range that goes down';
  return a >= lo && a <= hi && b >= lo && b <= hi ? undefined : `is out of range ${lo}-${hi}`;
}

// The zone names Intl takes that PostgreSQL reads as abbreviations
// (pg_timezone_abbrevs' Default set), fixed offsets there: the database
// (jobs.check_tz) refuses them, in the same words.
const ABBREVIATIONS = new Set(['CET', 'EET', 'EST', 'HST', 'MET', 'MST', 'WET']);

/**
 * Checks an IANA time zone name with Intl; throws a ValidationError naming
 * `field` otherwise. Offsets ('+01:00') and POSIX rules ('UTC+3') are
 * refused, as the database refuses them, and so are abbreviations (CET,
 * EST), which it reads as fixed offsets. The names PostgreSQL takes that
 * are no zone (posix/…, Factory, localtime) Intl refuses, and the database too.
 */
export function checkTz(tz: unknown, field = 'tz'): string {
  const rule = "must be an IANA time zone name such as 'Europe/Paris'";
  if (typeof tz !== 'string' || tz.length > 64 || !/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(tz)) {
    throw new ValidationError(field, `${rule}, got ${typeof tz === 'string' ? `'${tz.slice(0, 80)}'` : typeof tz}`);
  }
  if (ABBREVIATIONS.has(tz.toUpperCase())) {
    throw new ValidationError(field, `'${tz}' is an abbreviation, which PostgreSQL reads as a fixed offset (no daylight saving time): ` +
      "give a zone name such as 'Europe/Paris'");
  }
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
  } catch {
    throw new ValidationError(field, `${rule}, got '${tz}'`);
  }
  return tz;
}

/**
 * The next `count` ticks of a cron expression after `from`, computed by
 * croner: in UTC, or on the wall clock of time zone `tz`, with the database's
 * daylight saving rules (Vixie cron's, croner's fixedTimeRule 'no-wildcard').
 * Not for a recurrence rule, which only the database evaluates (jobs.cron_next).
 */
export function nextTicks(expr: string, count = 1, from: Date = new Date(), tz?: string): Date[] {
  if (typeof expr === 'string' && isRrule(expr)) {
    throw new ValidationError('cron', 'is a recurrence rule, whose ticks the database computes: select jobs.cron_next(rule, after, tz)');
  }
  const text = checkCron(expr);
  if (!Number.isInteger(count) || count < 1 || count > 1000) throw new ValidationError('count', 'must be an integer between 1 and 1000');
  if (!(from instanceof Date) || Number.isNaN(from.getTime())) throw new ValidationError('from', 'must be a valid Date');
  return croner(text, tz === undefined ? undefined : checkTz(tz)).nextRuns(count, from);
}

/**
 * croner for a checked expression, its day fields combined as Vixie cron
 * (pg_cron) and jobs.cron_next combine them: when either starts with a *
 * (a bare one, or a step over all days), a day must match both; else it may
 * match either. croner alone treats only a bare * that way.
 */
function croner(text: string, tz = 'UTC'): Cron {
  const lower = text.toLowerCase();
  const fields = lower.split(/\s+/);
  const [, , dom = '', , dow = ''] = fields;
  // pg_cron takes any step from 1: one past an item's range picks its first
  // value (*/61 is minute 0). croner refuses a step past its field's largest,
  // which picks the same values, so the step is cut to that (day-of-week: 7,
  // which in */7 and 0-7/7 picks 0 and 7, both Sunday, as */8 picks 0).
  const pattern = fields.length !== 5 ? lower : fields.map((f, i) =>
    f.replace(/\/(\d+)/g, (_, step: string) => `/${Math.min(Number(step), FIELDS[i]![1])}`)).join(' ');
  // DST as jobs.cron_spec_next_tz (Vixie cron): with no * nor /step in the
  // minute and hour fields, a skipped time fires at the gap's end and a
  // repeated one once; other times fire at every instant that matches.
  return new Cron(pattern, { mode: '5-part', timezone: tz, domAndDow: dom.startsWith('*') || dow.startsWith('*'),
                             fixedTimeRule: 'no-wildcard' });
}
