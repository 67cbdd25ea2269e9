/**
 * Text as a decimal number, as JSON would spell it (5, 0.5, 1e3; blanks around
 * it allowed), else NaN: Number() alone also reads '0x10' as 16, '0b11' as 3
 * and '0o7' as 7. The CLI's flags and variables and the adapters' settings
 * read numbers by this one rule.
 */
export function decimal(value: string): number {
  return /^\s*-?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?\s*$/i.test(value) ? Number(value) : NaN;
}
