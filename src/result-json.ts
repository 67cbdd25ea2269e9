// A handler's result as the JSON text its job's history stores (jobs.job.result),
// or a throw saying where JSON cannot hold it, or would lose part of it.
import { FailJob } from './job-errors.js';
import { jsonForm } from './json-loss.js';
import { notJsonAt, unstorableEscape } from './json-text.js';

/**
 * A handler's result as JSON text for the settle statement (null: none).
 * Throws when the result is not JSON or holds what PostgreSQL cannot store,
 * so the job is settled with the error: encoded before settling, one bad
 * result cannot break a batch's settle statement. What JSON cannot hold at
 * all (a BigInt, a cycle, a function or Symbol returned, nesting too deep,
 * a NUL), or would store with data lost (a Map or Set not empty, an Error,
 * a FailJob, RetryJob or SnoozeJob returned), throws a FailJob naming where
 * (unstorable): the same return would come again, and a retry would run the
 * handler's work again for it. A Promise not awaited throws a TypeError,
 * retried as a throw: the work it stands for may not be done; one anywhere
 * in the result wins over the rest. use 'item': a batch answer's item, whose
 * advice for an outcome inside it is to answer it as the item.
 *
 * Looked for as JSON.stringify meets each value, after its toJSON
 * (json-loss.ts jsonForm: a Map subclass with fields, a Map with own
 * properties, a toJSON returning a Map), in the one walk that reads the
 * result; then JSON.stringify, without a replacer, of the copy it made of
 * what it read: each getter, Proxy trap and toJSON runs as in one
 * JSON.stringify of the result (bench/result-json.ts).
 */
export function resultJson(result: unknown, use: 'result' | 'item' = 'result'): string | null {
  if (result === undefined || result === null) return null;
  const { first, retry, notJson, at, thrown, form } = jsonForm(result, 'result', use);
  if (!notJson && retry !== undefined) throw new TypeError(retry);
  if (!notJson && first !== undefined) throw unstorable(first);
  let json: string | undefined;
  try {
    if (thrown !== undefined) throw thrown.error; // a toJSON or getter that threw, not called again
    json = JSON.stringify(form);
  } catch (error) {
    // The promises past where the walk stopped were quieted by it (a BigInt beside a promise), nothing read again.
    if (at !== undefined) throw unstorable(at); // a BigInt or a cycle, where the walk met it
    // JSON.stringify's own refusals; anything else a toJSON or getter threw: retried as the handler's throw.
    const message = (error as Error)?.message ?? String(error);
    if (/call stack/i.test(message)) throw unstorable('result is nested too deeply for JSON');
    throw error;
  }
  if (json === undefined) throw unstorable(`result is a ${typeof result}, which JSON has no value for`);
  const bad = unstorableEscape(json);
  if (bad) throw unstorable(`${notJsonAt(form, 'result') ?? 'result'} has ${bad}, which PostgreSQL cannot store`);
  return json;
}

/** A result that can never be stored: its job fails at once, the reason its text (no pgdrain stack). */
function unstorable(reason: string): FailJob {
  const error = new FailJob(`result not stored: ${reason} (failed without retry: a retry would run the handler again to the same result)`);
  Object.defineProperty(error, 'stack', { value: `${error.name}: ${error.message}`, configurable: true, writable: true });
  return error;
}
