// A handler's result as the JSON text its job's history stores (jobs.job.result),
// or a throw saying where JSON cannot hold it, or would lose part of it.
import { FailJob } from './job-errors.js';
import { jsonForm } from './json-loss.js';
import { notJsonAt, quietThenables, unstorableEscape } from './json-text.js';

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
 * (json-loss.ts lossesOf: a Map subclass with fields, a Map with own
 * properties, a toJSON returning a Map); a result of plain data (plainForm:
 * most are, toJSON returning a string or plain data included) has none of
 * them, told by a recursive walk that costs a fraction of lossesOf's
 * (bench/result-json.ts). Then JSON.stringify, without a replacer, of the
 * form jsonForm made: each toJSON called once over the check and the text.
 */
export function resultJson(result: unknown, use: 'result' | 'item' = 'result'): string | null {
  if (result === undefined || result === null) return null;
  const checked = jsonForm(result, 'result', use);
  const { first, retry, notJson, thrown } = checked;
  const form = 'form' in checked ? checked.form : result; // undefined: a toJSON's answer
  if (!notJson && retry !== undefined) throw new TypeError(retry);
  if (!notJson && first !== undefined) throw unstorable(first);
  let json: string | undefined;
  try {
    if (thrown !== undefined) throw thrown.error; // a toJSON or getter that threw, not called again
    json = JSON.stringify(form);
  } catch (error) {
    quietThenables(result); // a BigInt beside a promise: the promise must not reject unhandled
    const at = notJsonAt(result);
    if (at !== undefined) throw unstorable(at);
    // JSON.stringify's own refusals; anything else a toJSON or getter threw: retried as the handler's throw.
    const message = (error as Error)?.message ?? String(error);
    if (/call stack/i.test(message)) throw unstorable('result is nested too deeply for JSON');
    if (/BigInt|circular/i.test(message)) throw unstorable(message);
    throw error;
  }
  if (json === undefined) throw unstorable(`result is a ${typeof result}, which JSON has no value for`);
  const bad = unstorableEscape(json);
  if (bad) throw unstorable(`${notJsonAt(result, 'result', true) ?? 'handler returned a string that'} has ${bad}, which PostgreSQL cannot store`);
  return json;
}

/** A result that can never be stored: its job fails at once, the reason its text (no pgdrain stack). */
function unstorable(reason: string): FailJob {
  const error = new FailJob(`result not stored: ${reason} (failed without retry: a retry would run the handler again to the same result)`);
  Object.defineProperty(error, 'stack', { value: `${error.name}: ${error.message}`, configurable: true, writable: true });
  return error;
}
