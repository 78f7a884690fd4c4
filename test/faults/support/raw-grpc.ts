import * as grpc from '@grpc/grpc-js';

// A gRPC client that sends bytes as they are: no schema on our side, so a
// request can be anything, including what no generated client would send.

const raw = (b: Buffer) => b;

export function rawClient(addr: string): grpc.Client {
  return new grpc.Client(addr, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1, 'grpc.max_receive_message_length': -1 });
}

function metadata(token: string | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return md;
}

/** The status code of one unary call (0: OK). */
export function unaryCode(c: grpc.Client, path: string, bytes: Uint8Array, token?: string): Promise<number> {
  return new Promise((resolve) => {
    c.makeUnaryRequest(path, raw, raw, Buffer.from(bytes), metadata(token), { deadline: Date.now() + 60_000 }, (err) => resolve(err ? err.code : 0));
  });
}

/** Server streaming: the status code, or 0 as soon as a message arrives (the call is then cancelled). */
export function serverStreamCode(c: grpc.Client, path: string, bytes: Uint8Array, token?: string): Promise<number> {
  return new Promise((resolve) => {
    const call = c.makeServerStreamRequest(path, raw, raw, Buffer.from(bytes), metadata(token), { deadline: Date.now() + 60_000 });
    let done = false;
    call.on('data', () => {
      if (done) return;
      done = true;
      resolve(0);
      call.cancel();
    });
    call.on('error', () => undefined);
    call.on('status', (s: grpc.StatusObject) => {
      if (!done) resolve(s.code);
      done = true;
    });
  });
}

/** Bidi streaming: writes the messages, half-closes, and resolves with the final status code. */
export function bidiCode(c: grpc.Client, path: string, messages: Uint8Array[], token?: string): Promise<number> {
  return new Promise((resolve) => {
    const call = c.makeBidiStreamRequest(path, raw, raw, metadata(token), { deadline: Date.now() + 60_000 });
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    call.on('status', (s: grpc.StatusObject) => resolve(s.code));
    for (const m of messages) call.write(Buffer.from(m));
    call.end();
  });
}

/** Runs tasks with at most `width` in flight. */
export async function pool<T, R>(items: readonly T[], width: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(width, items.length) }, async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i], i);
    }
  });
  await Promise.all(lanes);
  return out;
}
