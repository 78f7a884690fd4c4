import net from 'node:net';

// A TCP proxy between an agent and the hive that the test steers: it can
// delay every chunk, stall (hold all traffic, then deliver it late) and cut
// every connection. Bytes are never dropped or reordered within a
// connection; a cut closes the connection, as a failing network does.

export interface Proxy {
  port: number;
  /** Extra delay for every chunk in both directions. */
  setDelay(ms: number): void;
  /** Holds all traffic until release(); what was held is then delivered in order. */
  stall(): void;
  release(): void;
  /** Destroys every open connection (the agent reconnects). */
  cut(): void;
  connections(): number;
  close(): Promise<void>;
}

export async function createProxy(target: { host: string; port: number }): Promise<Proxy> {
  let delay = 0;
  let stalled = false;
  const held: Array<() => void> = [];
  const sockets = new Set<net.Socket>();
  let opened = 0;
  const pass = (fn: () => void) => {
    const go = () => (delay > 0 ? setTimeout(fn, delay) : fn());
    if (stalled) held.push(go);
    else go();
  };
  const server = net.createServer((client) => {
    opened++;
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.on('data', (d) => pass(() => upstream.writable && upstream.write(d)));
    upstream.on('data', (d) => pass(() => client.writable && client.write(d)));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    setDelay: (ms) => void (delay = ms),
    stall: () => void (stalled = true),
    release() {
      stalled = false;
      for (const go of held.splice(0)) go();
    },
    cut() {
      for (const s of sockets) s.destroy();
    },
    connections: () => opened,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
