// What an option of pg-boss's send() or graphile-worker's addJob() is here:
// a publish given one (publish(), publishBulk(), POST /jobs) names it unknown,
// and says which pgdrain option does its work (README "Coming from pg-boss or
// graphile-worker" has the rest).

const PEER_OPTIONS: Readonly<Record<string, string>> = {
  retryLimit: "pg-boss's retryLimit is maxRetries, the same count",
  maxAttempts: "graphile-worker's maxAttempts is maxRetries = maxAttempts - 1",
  startAfter: "pg-boss's startAfter is runAt (a Date) or delaySeconds",
  singletonKey: "pg-boss's singletonKey is dedupeKey",
  singletonSeconds: "pg-boss's singletonSeconds is throttleSeconds, with a dedupeKey",
  jobKey: "graphile-worker's jobKey is dedupeKey with dedupeMode: 'replace'",
  jobKeyMode: "graphile-worker's jobKeyMode is dedupeMode",
  queueName: "graphile-worker's queueName is serialKey",
  retryDelay: "pg-boss's retryDelay is retryDelaySeconds",
  retryDelayMax: "pg-boss's retryDelayMax is retryDelayMaxSeconds",
  expireInSeconds: "pg-boss's expireInSeconds is timeoutSeconds",
  retentionSeconds: "pg-boss's retentionSeconds is expiresInSeconds",
  flags: "graphile-worker's flags are attributes: { flag: true }",
};

/** What a pg-boss or graphile-worker publish option `key` is here, or undefined when it is none of theirs. */
export function peerHint(key: PropertyKey): string | undefined {
  return typeof key === 'string' && Object.hasOwn(PEER_OPTIONS, key) ? PEER_OPTIONS[key] : undefined;
}

/**
 * `unknown option "k"` for keys; with peerHints (a publish's options), saying what a pg-boss or
 * graphile-worker option among them is here. Not for other calls: the publish option a hint names is
 * not theirs (a drain's or a list's queueName is its queue, not serialKey).
 */
export function unknownOptions(keys: readonly PropertyKey[], peerHints: boolean): string {
  const named = keys.map((k) => JSON.stringify(k)).join(', ');
  const hints = !peerHints ? [] : keys.flatMap((k) => peerHint(k) ?? []);
  return `unknown option ${named}${hints.length > 0 ? ` (${hints.join('; ')})` : ''}`;
}
