// Summaries and the markdown tables the benchmark prints.

export interface Spread {
  min: number;
  median: number;
  max: number;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function spread(xs: readonly number[]): Spread {
  return { min: Math.min(...xs), median: median(xs), max: Math.max(...xs) };
}

/** The q-quantile (0..1) by nearest rank. */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

export const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');
export const fmtRatio = (n: number) => `${n.toFixed(2)}x`;
export const fmtMs = (n: number) => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toString());

export function fmtSpread(s: Spread, fmt: (n: number) => string): string {
  return `${fmt(s.min)} / ${fmt(s.median)} / ${fmt(s.max)}`;
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Milliseconds since an arbitrary origin, sub-millisecond. */
export const now = () => performance.now();

/** A positive integer from a flag or a knob; `label` names it in the error. */
export function positiveInt(label: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${label}: must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

/** An experiment's knob from the environment (a positive integer), or its default. */
export function envInt(name: string, fallback: number): number {
  const value = process.env[name];
  return value === undefined ? fallback : positiveInt(name, value);
}
