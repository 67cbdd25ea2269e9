// pgdrain/http: the HTTP API as a web-standard hono app.
export { createApp, type AppOptions, type AppQueue } from './app.js';
export { signRequest, SIGNATURE_HEADER, TIMESTAMP_HEADER } from './auth.js';
export { HttpError, type ErrorBody } from './errors.js';
export { DEFAULT_LIMITS, type HttpLimits } from './requests.js';
