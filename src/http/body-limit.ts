import type { MiddlewareHandler } from 'hono';

/**
 * Bounds a request's body at maxBytes, before anything reads it (a signed
 * request's check reads it whole): a Content-Length above it is refused
 * without reading a byte; a body without one (chunked) is read up to
 * maxBytes and refused at the chunk that passes it, never read whole.
 *
 * As hono's bodyLimit, except that a body it read is kept in the request's
 * body cache (which c.req.text() and arrayBuffer() read) rather than in a new
 * Request: workerd hands a GET the body it was sent, and refuses a GET Request
 * made with one (a TypeError, so a 500 for a GET with a small chunked body).
 */
export function limitBody(maxBytes: number, tooLarge: () => Error): MiddlewareHandler {
  return async (c, next) => {
    const body = c.req.raw.body;
    if (body === null) return next();
    const length = c.req.header('content-length');
    // The server's HTTP parser holds the body to its length: read later, as it is.
    if (length !== undefined && c.req.header('transfer-encoding') === undefined) {
      if (parseInt(length, 10) > maxBytes) throw tooLarge();
      return next();
    }
    const reader = body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) throw tooLarge();
      chunks.push(value);
    }
    const bytes = new Uint8Array(size);
    let at = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, at);
      at += chunk.byteLength;
    }
    // The cache holds each body read as a promise of it (hono's BodyCache types its entries as Body's methods).
    (c.req.bodyCache as Record<string, Promise<unknown>>).arrayBuffer = Promise.resolve(bytes.buffer);
    return next();
  };
}
