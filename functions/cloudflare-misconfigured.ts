// The Worker's answer when its bindings are wrong (a bad DRAIN_* value, no
// DATABASE_URL, neon-http with a transactional task): 500 not_configured,
// naming the binding, to a caller whose credentials pass; 401 to anyone
// else, as a configured Worker answers them. Credentials are checked first
// so an anonymous request learns nothing of the configuration. /healthz,
// which takes none, says what is wrong as before.
import { Hono } from 'hono';
import { authentication, credentialsError, type AuthVariables } from '../src/http/auth.js';
import { limitBody } from '../src/http/body-limit.js';
import { errorResponse } from '../src/http/errors.js';
import { DEFAULT_LIMITS, tooLarge } from '../src/http/requests.js';
import type { ValidationError } from '../src/index.js';
import type { Env } from './cloudflare-settings.js';

let built: { key: string; auth: ReturnType<typeof authentication> | undefined } | undefined;

/** The credentials' check of this isolate (its replay guard outlives a request), undefined when they cannot be checked. */
function authFor(env: Env): ReturnType<typeof authentication> | undefined {
  const key = JSON.stringify([env.PGDRAIN_TOKEN, env.PGDRAIN_HMAC_SECRET]);
  if (built?.key !== key) {
    const token = env.PGDRAIN_TOKEN || undefined;
    const hmacSecret = env.PGDRAIN_HMAC_SECRET || undefined;
    // createApp's rules: a credential it refuses (or none at all) lets no one in.
    const auth = credentialsError({ token, hmacSecret }) === null ? authentication({ token, hmacSecret, toleranceSeconds: DEFAULT_LIMITS.signatureToleranceSeconds }) : undefined;
    built = { key, auth };
  }
  return built.auth;
}

/** Answers a request to a Worker whose bindings are wrong (error names the binding). */
export function misconfigured(request: Request, env: Env, error: ValidationError): Promise<Response> | Response {
  const answer = () => Response.json({ error: { code: 'not_configured', message: error.message, field: error.field } }, { status: 500 });
  const app = new Hono<{ Variables: AuthVariables }>();
  app.onError((e, c) => errorResponse(c, e));
  app.get('/healthz', answer);
  const auth = authFor(env);
  if (auth) {
    for (const path of ['/dashboard', '/dashboard/']) app.get(path, auth.checkDashboard, answer);
    app.use('*', auth.checkHeaders, limitBody(DEFAULT_LIMITS.maxBodyBytes, () => tooLarge(DEFAULT_LIMITS)), auth.verifySignature);
    app.all('*', answer);
  } else {
    // No credential is set up right (the error, or the log, says which): no one gets in.
    app.all('*', () => Response.json({ error: { code: 'unauthorized', field: null,
      message: 'this Worker accepts no credentials until its PGDRAIN_TOKEN or PGDRAIN_HMAC_SECRET is set up (see its log)' } },
      { status: 401 }));
  }
  return app.fetch(request);
}
