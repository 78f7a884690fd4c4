// The Connect protocol (connectrpc.com/docs/protocol) with the JSON codec,
// over the browser's fetch, for the two calls the status page makes:
//
//  - unary: POST <base>/<service>/<method>, content-type application/json,
//    the request as JSON; 200 with the response JSON, or an error status
//    with {"code", "message"};
//  - server streaming: POST with content-type application/connect+json and
//    the request in one envelope; the response body is a sequence of
//    envelopes (flags byte, uint32 big-endian length, payload). Flag 0x02
//    marks the last one, the end-of-stream JSON, which carries the error,
//    if any. A body that ends without it was cut off.
//
// No dependencies, no build step: a module the page imports as it is (and
// the tests import in Node, which has the same fetch and streams).

export const FLAG_COMPRESSED = 0x01;
export const FLAG_END_STREAM = 0x02;

/** An RPC that failed, with the Connect code ("unauthenticated", "unavailable", ...). */
export class RpcError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
  }
}

// The Connect protocol's mapping for HTTP statuses that come without a
// Connect error body (a proxy in between, a server that is not Connect).
const HTTP_TO_CODE = { 400: 'internal', 401: 'unauthenticated', 403: 'permission_denied', 404: 'unimplemented', 429: 'unavailable', 502: 'unavailable', 503: 'unavailable', 504: 'unavailable' };

function headers(token, contentType) {
  const h = { 'content-type': contentType, 'connect-protocol-version': '1' };
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

async function errorFromResponse(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  if (body && typeof body.code === 'string') return new RpcError(body.code, body.message || body.code);
  return new RpcError(HTTP_TO_CODE[res.status] || 'unknown', `HTTP ${res.status} ${res.statusText}`.trim());
}

function networkError(err, signal) {
  if (signal && signal.aborted) return new RpcError('canceled', 'canceled');
  return new RpcError('unavailable', `cannot reach the hive: ${err && err.message ? err.message : err}`);
}

/** One unary call with the JSON codec. */
export async function callUnary(baseUrl, method, request, { token, signal } = {}) {
  let res;
  try {
    res = await fetch(`${baseUrl}/${method}`, { method: 'POST', headers: headers(token, 'application/json'), body: JSON.stringify(request), signal });
  } catch (err) {
    throw networkError(err, signal);
  }
  if (!res.ok) throw await errorFromResponse(res);
  return res.json();
}

/** One enveloped message: flags, big-endian length, the JSON bytes. */
export function encodeEnvelope(message, flags = 0) {
  const data = new TextEncoder().encode(JSON.stringify(message));
  const out = new Uint8Array(5 + data.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, data.length, false);
  out.set(data, 5);
  return out;
}

/**
 * Splits a byte stream into envelopes whatever the chunking: an envelope
 * may arrive in pieces, several may arrive in one chunk.
 */
export class EnvelopeParser {
  constructor(maxBytes = 16 * 1024 * 1024) {
    this.buf = new Uint8Array(0);
    this.maxBytes = maxBytes;
  }

  /** Adds a chunk; returns the complete envelopes now available as {flags, data}. */
  push(chunk) {
    if (this.buf.length === 0) this.buf = chunk;
    else {
      const joined = new Uint8Array(this.buf.length + chunk.length);
      joined.set(this.buf, 0);
      joined.set(chunk, this.buf.length);
      this.buf = joined;
    }
    const out = [];
    while (this.buf.length >= 5) {
      const view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
      const length = view.getUint32(1, false);
      if (length > this.maxBytes) throw new RpcError('resource_exhausted', `message of ${length} bytes is over the limit`);
      if (this.buf.length < 5 + length) break;
      out.push({ flags: this.buf[0], data: this.buf.subarray(5, 5 + length) });
      this.buf = this.buf.subarray(5 + length);
    }
    return out;
  }

  /** Bytes of an incomplete envelope still waiting for the rest. */
  get pending() {
    return this.buf.length;
  }
}

const decoder = new TextDecoder();

/**
 * A server-streaming call with the JSON codec: yields each response
 * message; returns when the server ends the stream cleanly; throws an
 * RpcError when it ends with an error, or when the body stops short of the
 * end-of-stream message.
 */
export async function* callServerStream(baseUrl, method, request, { token, signal } = {}) {
  let res;
  try {
    res = await fetch(`${baseUrl}/${method}`, { method: 'POST', headers: headers(token, 'application/connect+json'), body: encodeEnvelope(request), signal });
  } catch (err) {
    throw networkError(err, signal);
  }
  if (res.status !== 200) throw await errorFromResponse(res);
  const type = res.headers.get('content-type') || '';
  if (!type.startsWith('application/connect+json')) throw new RpcError('internal', `unexpected content-type "${type}"`);
  const reader = res.body.getReader();
  const parser = new EnvelopeParser();
  try {
    for (;;) {
      let step;
      try {
        step = await reader.read();
      } catch (err) {
        throw networkError(err, signal);
      }
      if (step.done) break;
      for (const env of parser.push(step.value)) {
        if (env.flags & FLAG_COMPRESSED) throw new RpcError('internal', 'compressed message, but none was asked for');
        const json = env.data.length ? JSON.parse(decoder.decode(env.data)) : {};
        if (env.flags & FLAG_END_STREAM) {
          if (json.error) throw new RpcError(json.error.code || 'unknown', json.error.message || json.error.code || 'stream failed');
          return;
        }
        yield json;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  throw new RpcError('unavailable', 'the stream ended without its end-of-stream message');
}

/** Delay before reconnect attempt n: exponential with full jitter, capped. */
export function backoffMs(attempt, baseMs = 500, capMs = 30000, random = Math.random) {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30)));
}
