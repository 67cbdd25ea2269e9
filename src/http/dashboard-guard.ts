import type { Context } from 'hono';
import { HttpError } from './errors.js';

// The dashboard's actions are form POSTs from a browser logged in with HTTP
// Basic: credentials it sends again on its own with any site's cross-site
// form (CSRF). So each action must pass two checks, either of which a forged
// form fails:
//
// - its Origin (else its Referer) names this server's host (Host, or
//   X-Forwarded-Host from a proxy in front), and its Sec-Fetch-Site, when the
//   browser sends one, is same-origin. A page cannot set these headers on a
//   form it sends elsewhere.
// - its form token: a time and the HMAC-SHA256 of it and of what the form
//   does (its action and target: formBinding) keyed with the token
//   (PGDRAIN_TOKEN), which only a dashboard page rendered for a logged-in
//   browser holds; another site's page cannot read it, and one lifted from a
//   form does only what that form does. Stateless, so any instance with the
//   same token takes it, and it lasts FORM_TOKEN_HOURS.
//
// A failed check is a 403 saying which; nothing was read past the headers.

/** How long a page's forms stay usable (the page does not refresh itself when it has forms). */
export const FORM_TOKEN_HOURS = 12;
/** How far ahead of this server's clock a form token may be dated (instances whose clocks differ). */
const FUTURE_SECONDS = 300;
const FORM_TOKEN = /^(\d{1,12})\.([0-9a-f]{64})$/;
const encoder = new TextEncoder();

function forbidden(field: string, message: string): HttpError {
  return new HttpError(403, 'forbidden', `${field}: ${message}`, field);
}

/** The form token and the redirect's note, each an HMAC keyed with the token, told apart by their first line. */
export class DashboardSigner {
  private readonly key: ReturnType<typeof crypto.subtle.importKey>;
  constructor(token: string) {
    this.key = crypto.subtle.importKey('raw', encoder.encode(token), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  }

  /** The token of a form that does `binding` (formBinding), on a page rendered at `now`. */
  async formToken(binding: string, now = Date.now()): Promise<string> {
    const at = Math.floor(now / 1000);
    return `${at}.${await this.sign(`form\n${at}\n${binding}`)}`;
  }

  /**
   * Throws a 403 naming the `csrf` field unless value is a form token of this
   * server for a form that does `binding`, dated within FORM_TOKEN_HOURS.
   */
  async checkFormToken(value: string | undefined, binding: string, now = Date.now()): Promise<void> {
    if (value === undefined || value === '') {
      throw forbidden('csrf', 'missing form token: take the action from the dashboard\'s own page (reload it)');
    }
    const match = FORM_TOKEN.exec(value);
    if (!match || !(await this.verify(`form\n${match[1]}\n${binding}`, match[2]!))) {
      throw forbidden('csrf', 'invalid form token: take the action from the dashboard\'s own page (reload it)');
    }
    const age = now / 1000 - Number(match[1]);
    if (age > FORM_TOKEN_HOURS * 3600 || age < -FUTURE_SECONDS) {
      throw forbidden('csrf', `form token expired (the page is more than ${FORM_TOKEN_HOURS} h old): reload the dashboard and try again`);
    }
  }

  /** The signature of a note the dashboard shows after an action (so a link cannot make it show another). */
  signNote(note: string): Promise<string> {
    return this.sign(`note\n${note}`);
  }

  /** Whether sig is the note's signature. */
  checkNote(note: string, sig: string): Promise<boolean> {
    return /^[0-9a-f]{64}$/.test(sig) ? this.verify(`note\n${note}`, sig) : Promise.resolve(false);
  }

  private async sign(message: string): Promise<string> {
    const mac = await crypto.subtle.sign('HMAC', await this.key, encoder.encode(message));
    return Array.from(new Uint8Array(mac), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** crypto.subtle.verify compares in constant time. */
  private async verify(message: string, hex: string): Promise<boolean> {
    const mac = Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16));
    return crypto.subtle.verify('HMAC', await this.key, mac, encoder.encode(message));
  }
}

/**
 * A host as compared: lower case, without a default port (80, 443), which a
 * proxy may name (X-Forwarded-Host: jobs.example.com:443) and a browser's
 * Origin leaves out. Either port on either scheme, as the scheme is not compared.
 */
function hostOf(host: string): string {
  return host.toLowerCase().replace(/:(80|443)$/, '');
}

/**
 * Throws a 403 unless the request says it comes from a page of this server:
 * Origin (else Referer) with this host, and Sec-Fetch-Site same-origin when
 * sent. The scheme is not compared: behind a proxy that ends TLS the server
 * sees http, the browser https (the form token covers the rest).
 */
export function checkSameOrigin(c: Context): void {
  const site = c.req.header('sec-fetch-site');
  if (site !== undefined && site !== 'same-origin') {
    throw forbidden('sec-fetch-site', `${site}: the browser says this form came from another site; `
      + 'take the action from the dashboard\'s own page');
  }
  const origin = c.req.header('origin');
  const field = origin === undefined ? 'referer' : 'origin';
  const source = origin ?? c.req.header('referer');
  if (source === undefined) {
    throw forbidden('origin', 'missing: a browser sends Origin with a form; take the action from the dashboard\'s own page');
  }
  let host: string;
  try {
    host = hostOf(new URL(source).host);
  } catch {
    throw forbidden(field, `${JSON.stringify(source)} is not this server's page (a page that hides its origin?)`);
  }
  const forwarded = (c.req.header('x-forwarded-host') ?? '').split(',').map((h) => h.trim());
  const hosts = [new URL(c.req.url).host, c.req.header('host') ?? '', ...forwarded].map(hostOf);
  if (host === '' || !hosts.includes(host)) {
    throw forbidden(field, `${JSON.stringify(source)} is another site than this dashboard's (${hosts[0]}): `
      + 'take the action from the dashboard\'s own page');
  }
}
