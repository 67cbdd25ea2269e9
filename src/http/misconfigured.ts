// The answer of a Worker or Lambda whose settings are wrong (a bad DRAIN_* or
// PGDRAIN_* value, no DATABASE_URL, neon-http with a transactional task, no
// PGDRAIN_TOKEN): 500 not_configured, naming the setting, to a caller whose
// credentials pass; 401 to anyone else, as the adapter answers them when set
// up right. Credentials are checked first so an anonymous request learns
// nothing of the configuration. /healthz, which takes none, says what is wrong.
import { Hono } from 'hono';
import { ValidationError } from '../errors.js';
import { authentication, credentialsError, type AuthVariables } from './auth.js';
import { limitBody } from './body-limit.js';
import { errorResponse } from './errors.js';
import { DEFAULT_LIMITS, tooLarge } from './requests.js';

/** The adapter's credentials, by the names of its settings (Worker secrets, Lambda variables). */
export interface Secrets {
  PGDRAIN_TOKEN?: string | undefined;
  PGDRAIN_HMAC_SECRET?: string | undefined;
}

export interface MisconfiguredOptions {
  /** createApp's routePath: where the platform puts a prefix before the routes (API Gateway's stage). */
  routePath?: ((request: Request, env: unknown) => string) | undefined;
  /** The env the request was fetched with, handed to routePath. */
  env?: unknown;
}

/**
 * Why the adapter's credentials cannot guard the API (createApp would refuse
 * them), named by the setting (`prefix`: the Worker's 'env.'), or null. None
 * set is said as the settings, not as createApp's token / hmacSecret options;
 * `setOne` says how to set one on this platform. A rule, never a value.
 */
export function credentialSettingsError(secrets: Secrets, prefix: string, setOne: string): ValidationError | null {
  const token = secrets.PGDRAIN_TOKEN || undefined;
  const hmacSecret = secrets.PGDRAIN_HMAC_SECRET || undefined;
  const refused = credentialsError({ token, hmacSecret });
  if (!refused) return null;
  if (!token && !hmacSecret) return new ValidationError(`${prefix}PGDRAIN_TOKEN`, `is not set, nor PGDRAIN_HMAC_SECRET: ${setOne}`);
  return new ValidationError(`${prefix}${refused.field === 'hmacSecret' ? 'PGDRAIN_HMAC_SECRET' : 'PGDRAIN_TOKEN'}`, refused.rule);
}

let built: { key: string; auth: ReturnType<typeof authentication> | undefined } | undefined;

/** The credentials' check of this isolate or instance (its replay guard outlives a request), undefined when they cannot be checked. */
function authFor(secrets: Secrets): ReturnType<typeof authentication> | undefined {
  const key = JSON.stringify([secrets.PGDRAIN_TOKEN, secrets.PGDRAIN_HMAC_SECRET]);
  if (built?.key !== key) {
    const token = secrets.PGDRAIN_TOKEN || undefined;
    const hmacSecret = secrets.PGDRAIN_HMAC_SECRET || undefined;
    // createApp's rules: a credential it refuses (or none at all) lets no one in.
    const auth = credentialsError({ token, hmacSecret }) === null
      ? authentication({ token, hmacSecret, toleranceSeconds: DEFAULT_LIMITS.signatureToleranceSeconds }) : undefined;
    built = { key, auth };
  }
  return built.auth;
}

/**
 * A setting's error that quotes the value given, as `pgdrain drain` quotes a
 * bad PGDRAIN_* ('must be an integer from 1 to 10000, got "lots"'): in the
 * log and a failed scheduled drain. An HTTP answer gives the rule alone
 * (/healthz answers anyone).
 */
export class SettingValueError extends ValidationError {
  /** The message without the value: field and rule. */
  readonly withoutValue: string;
  constructor(field: string, rule: string, given: string, options: { cause?: unknown } = {}) {
    super(field, `${rule}, got ${given}`, options);
    this.withoutValue = `${field}: ${rule}`;
  }
}

/** Answers a request to an adapter whose settings are wrong (error names the setting). */
export function misconfigured(request: Request, secrets: Secrets, error: ValidationError,
                              options: MisconfiguredOptions = {}): Promise<Response> | Response {
  const message = error instanceof SettingValueError ? error.withoutValue : error.message;
  const answer = () => Response.json({ error: { code: 'not_configured', message, field: error.field } }, { status: 500 });
  const { routePath } = options;
  const app = new Hono<{ Variables: AuthVariables }>(routePath ? { getPath: (r, o) => routePath(r, o?.env) } : {});
  app.onError((e, c) => errorResponse(c, e));
  app.get('/healthz', answer);
  const auth = authFor(secrets);
  if (auth) {
    for (const path of ['/dashboard', '/dashboard/']) app.get(path, auth.checkDashboard, answer);
    app.use('*', auth.checkHeaders, limitBody(DEFAULT_LIMITS.maxBodyBytes, () => tooLarge(DEFAULT_LIMITS)), auth.verifySignature);
    app.all('*', answer);
  } else {
    // No credential is set up right (the error, or the log, says which): no one gets in.
    app.all('*', () => Response.json({ error: { code: 'unauthorized', field: null,
      message: 'this service accepts no credentials until its PGDRAIN_TOKEN or PGDRAIN_HMAC_SECRET is set up (see its log)' } },
      { status: 401 }));
  }
  return app.fetch(request, options.env);
}
