import { ValidationError } from './errors.js';
import { parseJson } from './json-text.js';
import { drainOptionsSchema, type DrainOptions } from './drain-options.js';

// A drain's filter and exclude as its edges take them (HTTP's POST /drain,
// the Lambda and Worker settings, the CLI's flags): checked by drain()'s own
// rules before any claim, each error naming the field as the caller wrote it.

/** Which jobs a drain may claim: DrainOptions.filter and DrainOptions.exclude. */
export interface DrainSelection {
  filter?: DrainOptions['filter'];
  exclude?: DrainOptions['exclude'];
}

/**
 * Checks a drain's filter and exclude with drain()'s own rules and messages
 * (drainOptionsSchema), so an edge refuses them before any claim. An error
 * names the field as the caller gave it: names.filter, names.exclude, or
 * names.exclude + '[1]' for an element of exclude.
 */
export function checkDrainSelection(given: { filter?: unknown; exclude?: unknown },
                                    names = { filter: 'filter', exclude: 'exclude' }): DrainSelection {
  const { filter, exclude } = given;
  const result = drainOptionsSchema.safeParse({ ...(filter === undefined ? {} : { filter }),
                                                ...(exclude === undefined ? {} : { exclude }) });
  if (result.success) {
    const { filter: f, exclude: e } = result.data;
    return { ...(f && { filter: f }), ...(e && { exclude: e }) };
  }
  const issue = result.error.issues[0]!;
  const at = String(issue.path[0]); // filter, exclude or exclude[i]
  throw new ValidationError(at === 'filter' ? names.filter : names.exclude + at.slice('exclude'.length), issue.message);
}

/**
 * The same from settings: a string is JSON text (an environment variable),
 * blank is none; any other value is taken as is (a Worker's JSON [vars]).
 */
export function checkDrainSelectionSettings(filter: unknown, exclude: unknown,
                                            names: { filter: string; exclude: string }): DrainSelection {
  const json = (v: unknown, field: string) => {
    if (typeof v !== 'string') return v;
    try {
      return parseJson(v, field);
    } catch (error) {
      // The parser's reason quotes the value, and a misconfigured adapter's
      // /healthz tells anyone the error: say the rule, not the setting's text.
      if (!(error instanceof ValidationError)) throw error;
      throw new ValidationError(field, /^must be valid JSON/.test(error.rule)
        ? 'must be valid JSON text, e.g. {"plan":"pro"} (the parser\'s reason is left out: it quotes the value)'
        : 'must hold no number past 2^53 or the range of a 64-bit float: send such a number as a string');
    }
  };
  return checkDrainSelection({ filter: json(filter, names.filter), exclude: json(exclude, names.exclude) }, names);
}
