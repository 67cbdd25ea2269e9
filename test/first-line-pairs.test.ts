// A failure's first line is cut to a number of UTF-16 units (POST /drain's
// answer, the dashboard, `pgdrain jobs list`); a cut that fell inside an
// emoji's surrogate pair sent half of it: JSON of a lone surrogate, which
// strict decoders refuse and others show as U+FFFD.
import { describe, expect, it } from 'vitest';
import { FAILURE_LINE, firstLine } from '../src/failure-list.js';
import { sliceUnits } from '../src/error-text.js';

const LONE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe('first-line cuts', () => {
  it('never split a surrogate pair: the emoji the cut falls in is left out whole', () => {
    const line = `${'x'.repeat(FAILURE_LINE - 1)}😀 and more`;
    const cut = firstLine(`${line}\n    at stack`);
    expect(LONE.test(cut)).toBe(false);
    expect(cut).toBe(`${'x'.repeat(FAILURE_LINE - 1)}…`);
  });

  it('keep a pair that ends at the cut, and cut plain text where asked', () => {
    expect(sliceUnits('ab😀cd', 4)).toBe('ab😀');
    expect(sliceUnits('ab😀cd', 3)).toBe('ab');
    expect(sliceUnits('abcdef', 3)).toBe('abc');
    expect(sliceUnits('😀', 0)).toBe('');
    expect(firstLine('short\nstack')).toBe('short');
  });
});
