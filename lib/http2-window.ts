import type * as http2 from 'node:http2';
import { Http2SessionManager } from '@connectrpc/connect-node';

// HTTP/2 receive windows for a client that reads a long, busy stream (the
// monitor's WatchWorkers). Node opens a connection with 64 KiB windows, so
// a sender may have 64 KiB in flight before it waits for a WINDOW_UPDATE;
// a hive that is saturated answers each one late, and a watch of a large
// fleet fell seconds behind at 64 KiB per round trip. A wide window lets
// the hive send what is pending while the monitor reads it. What it costs
// is memory the reader might buffer: up to the window, per connection.

export const WIDE_WINDOW_BYTES = 16 * 1024 * 1024;

const widened = new WeakSet<http2.ClientHttp2Session>();

/** connect-node's session manager, with wide stream and connection windows on every session it opens. */
class WideWindowSessionManager extends Http2SessionManager {
  override async request(...args: Parameters<Http2SessionManager['request']>): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session as http2.ClientHttp2Session | undefined;
    if (session && !widened.has(session)) {
      widened.add(session);
      // The connection's window (the settings below cover each stream's).
      if (!session.destroyed) session.setLocalWindowSize(WIDE_WINDOW_BYTES);
    }
    return stream;
  }
}

export function wideWindowSessionManager(
  baseUrl: string,
  ping: ConstructorParameters<typeof Http2SessionManager>[1],
  nodeOptions: http2.ClientSessionOptions | http2.SecureClientSessionOptions = {},
): Http2SessionManager {
  return new WideWindowSessionManager(baseUrl, ping, { ...nodeOptions, settings: { ...nodeOptions.settings, initialWindowSize: WIDE_WINDOW_BYTES } });
}
