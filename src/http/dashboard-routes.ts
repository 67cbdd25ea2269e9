import type { Context, Hono, MiddlewareHandler } from 'hono';
import { html, raw } from 'hono/html';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Queryable } from '../db/driver.js';
import { ValidationError } from '../errors.js';
import type { AuthVariables } from './auth.js';
import { limitBody } from './body-limit.js';
import { backOf, DASHBOARD_ACTIONS, formBinding, formFields, runAction, type DashboardAction } from './dashboard-actions.js';
import { checkSameOrigin, DashboardSigner } from './dashboard-guard.js';
import { dashboardHeaders, parseDashboardQuery, readDashboard, renderDashboard, STYLE } from './dashboard.js';
import { errorAnswer, HttpError } from './errors.js';

// The dashboard's routes, before the API's auth (which checkDashboard
// replaces: a browser sends Basic, not a bearer token):
//
//   GET  /dashboard, /dashboard/   the page (?queue=NAME: one queue)
//   POST /dashboard/ACTION         with actions on: pause, resume, redrive,
//                                  cancel; a 303 back to the page with a note
//
// An action's checks, in order: credentials (401), which must be the
// token, as Basic or bearer (a signed request takes no action: 403), same
// origin (403), the form's size (413) and type, its form token (403), its fields (400), then
// one admin call. Its errors answer an HTML page a browser shows. The page's
// body (workerd hands a GET the body it was sent) is held to the app's limit
// before its auth reads a signed one's, as every API route's is.

/** The largest form an action takes: a form token, an id or a queue name, and the page to go back to. */
export const MAX_FORM_BYTES = 4096;

/** What the dashboard's routes take from createApp. */
export interface DashboardRouteOptions {
  /** checkDashboard: Basic with the token as the password, bearer, or signed (the page only: no actions). */
  auth: MiddlewareHandler<{ Variables: AuthVariables }>;
  /** The app's bound on a request's body (limits.maxBodyBytes): the page's, before its auth reads a signed one. */
  bodyLimit: MiddlewareHandler;
  driverOf: (c: Context) => Queryable;
  /** The token that keys the form tokens: given, the page has forms and the actions are taken; else read-only. */
  actionsToken: string | undefined;
  /** The app's bound on a read: run(signal) given up after its time or when the request ends. */
  read: <T>(c: Context, run: (signal: AbortSignal) => Promise<T>) => Promise<T>;
  /** The most failed jobs a queue's redrive puts back per click (limits.dashboardRedriveRows). */
  redriveRows: number;
  /** The app's bound on a write: run(signal) given up after its time, then a 503 that says `maybe`. */
  bounded: <T>(maybe: string, run: (signal: AbortSignal) => Promise<T>) => Promise<T>;
  onError?: ((error: unknown) => void) | undefined;
}

/** Adds the dashboard's routes to app; to be called before the API's auth middleware. */
export function mountDashboard(app: Hono<{ Variables: AuthVariables }>, o: DashboardRouteOptions): void {
  const signer = o.actionsToken === undefined ? undefined : new DashboardSigner(o.actionsToken);
  const headers = dashboardHeaders(signer !== undefined);
  // With a trailing slash too, as a browser may be given it (its links are relative: ?queue=…).
  for (const path of ['/dashboard', '/dashboard/']) {
    app.get(path, headers, o.bodyLimit, o.auth, async (c) => {
      const query = c.req.queries();
      // Only the token takes actions: a signed request (a scheduler's) gets the page without forms.
      const acting = signer !== undefined && c.get('pendingSignature') === undefined ? signer : undefined;
      const note = await takeNote(query, acting);
      const queue = parseDashboardQuery(query);
      const data = await o.read(c, (signal) => readDashboard(o.driverOf(c), queue, signal));
      const now = Date.now();
      const actions = acting && {
        // Each form's token, of what the form does: its action and the fields the page fills in.
        formToken: (action: DashboardAction, fields: Record<string, string>) =>
          acting.formToken(formBinding(action, (name) => (fields[name] === undefined ? [] : [fields[name]])), now),
        // The forms' paths, relative as the links are: from /dashboard, dashboard/pause; from /dashboard/, pause.
        base: c.req.path.endsWith('/') ? '' : 'dashboard/', note, redriveRows: o.redriveRows };
      return c.html(renderDashboard(data, queue, new Date(now), actions));
    });
  }

  const formLimit = limitBody(MAX_FORM_BYTES,
    () => new HttpError(413, 'payload_too_large', `body: must be at most ${MAX_FORM_BYTES} bytes (a dashboard form)`, 'body'));
  for (const action of Object.keys(DASHBOARD_ACTIONS) as DashboardAction[]) {
    app.post(`/dashboard/${action}`, headers, async (c) => {
      try {
        // Bounded first: a signed request's check reads the body.
        await formLimit(c, async () => {});
        await o.auth(c, async () => {});
        if (signer === undefined) {
          throw new HttpError(404, 'dashboard_read_only', 'the dashboard is read-only here: its actions are on with '
            + 'pgdrain serve --dashboard-actions (createApp\'s dashboardActions)');
        }
        if (c.get('pendingSignature') !== undefined) throw signedRefused();
        checkSameOrigin(c);
        if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(c.req.header('content-type') ?? '')) {
          throw new ValidationError('content-type', 'must be application/x-www-form-urlencoded, as the dashboard\'s forms send');
        }
        const params = new URLSearchParams(await c.req.text());
        const csrf = params.getAll('csrf');
        await signer.checkFormToken(csrf.length > 1 ? 'given more than once' : csrf[0], formBinding(action, (name) => params.getAll(name)));
        const fields = formFields(action, params);
        const back = backOf(fields);
        // The admin call takes the bound's signal: given up when it fires, and sent again after a deadlock
        // as the CLI's call of the same function is (send.ts), not answered as a 500.
        const note = await o.bounded('the action may have been taken: reload the dashboard to see',
          (signal) => runAction(o.driverOf(c), action, fields, o.redriveRows, signal));
        const query = `${back === '' ? '' : `queue=${encodeURIComponent(back)}&`}note=${encodeURIComponent(note)}`;
        return c.redirect(`./?${query}&sig=${await signer.signNote(note)}`, 303);
      } catch (error) {
        return errorPage(c, error, o.onError);
      }
    });
  }
}

/**
 * A signed request (PGDRAIN_HMAC_SECRET, for schedulers) may drain,
 * publish and read, as the API lets it; the API has no pause, resume, cancel
 * or redrive, so neither has the dashboard for it: only the token does.
 */
function signedRefused(): HttpError {
  return new HttpError(403, 'forbidden', 'authorization: a signed request cannot take dashboard actions (it may drain, '
    + 'publish and read): log in with the token (PGDRAIN_TOKEN) as the password, or send it as a bearer token', 'authorization');
}

/**
 * The note, taken out of the query with its signature: shown when both came
 * once and the signature is the server's (signer's), else left out, the page
 * shown all the same: a stale link (the token rotated, the actions turned
 * off) is no error, and a forged note is never shown.
 */
async function takeNote(query: Record<string, string[]>, signer: DashboardSigner | undefined): Promise<string | undefined> {
  const { note, sig } = query;
  delete query.note;
  delete query.sig;
  if (signer === undefined || note?.length !== 1 || sig?.length !== 1) return undefined;
  return (await signer.checkNote(note[0]!, sig[0]!)) ? note[0] : undefined;
}

/** An action's error as a page: status, code and message, every value escaped, and the way back. */
function errorPage(c: Context, error: unknown, report: ((error: unknown) => void) | undefined): Response | Promise<Response> {
  const { status, code, message, headers } = errorAnswer(error, report);
  for (const [name, value] of Object.entries(headers)) c.header(name, value);
  return c.html(html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pgdrain – ${status}</title><style>${raw(STYLE)}</style></head>
<body><h1>pgdrain</h1>
<p class="error"><strong>${status} ${code}</strong>: ${message}</p>
<p>${status < 500 ? 'Nothing was changed. ' : ''}<a href="./">Back to the dashboard</a>.</p>
</body></html>
`, status as ContentfulStatusCode);
}
