import net from 'node:net';
import tls from 'node:tls';

// What /healthz checks beyond the hive itself: PostgreSQL answers a query,
// and Redis (only when configured) answers PING with exactly +PONG. A
// Redis that wants a password (-NOAUTH) or is still loading its dataset
// (-LOADING) is up as a process but not usable, so those fail too. Each
// probe reports what is wrong as text, naming the dependency.

export interface DependencyProbe {
  name: string;
  /** Resolves when usable; rejects with the reason. */
  check(): Promise<void>;
}

/** Pure: the complete RESP simple-string or error replies in a buffer, without their CRLF. */
export function respLines(buf: string): string[] {
  const out: string[] = [];
  let i: number;
  let rest = buf;
  while ((i = rest.indexOf('\r\n')) >= 0) {
    out.push(rest.slice(0, i));
    rest = rest.slice(i + 2);
  }
  return out;
}

/** Pure: why a PING reply means "not usable", or null for exactly +PONG. */
export function pongProblem(reply: string): string | null {
  if (reply === '+PONG') return null;
  if (reply.startsWith('-')) return `answered ${reply.slice(1)}`;
  return `answered ${JSON.stringify(reply.slice(0, 80))} instead of PONG`;
}

const command = (...args: string[]) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;

/** One connection: AUTH when the URL has a password, then PING; exactly +PONG passes. */
export function pingRedis(url: string, timeoutMs = 2000): Promise<void> {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return Promise.reject(new Error(`not a redis:// URL: ${u.protocol}`));
  const host = u.hostname || '127.0.0.1';
  const port = Number(u.port || 6379);
  const password = decodeURIComponent(u.password);
  const user = decodeURIComponent(u.username);
  return new Promise((resolve, reject) => {
    const socket = u.protocol === 'rediss:' ? tls.connect({ host, port, servername: host }) : net.connect({ host, port });
    let buf = '';
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const expected = password ? 2 : 1;
    socket.once(u.protocol === 'rediss:' ? 'secureConnect' : 'connect', () => {
      socket.write((password ? command('AUTH', ...(user ? [user, password] : [password])) : '') + command('PING'));
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buf += chunk;
      const lines = respLines(buf);
      if (lines.length < expected) return;
      if (password && lines[0] !== '+OK') return done(new Error(`AUTH ${pongProblem(lines[0]) ?? 'answered PONG'}`));
      const problem = pongProblem(lines[expected - 1]);
      done(problem ? new Error(problem) : undefined);
    });
    socket.on('error', (err) => done(new Error((err as NodeJS.ErrnoException).code ?? err.message)));
    socket.on('close', () => done(new Error('closed the connection without answering')));
  });
}

/** Runs every probe at once; the problems, each prefixed with its dependency's name. */
export async function dependencyProblems(probes: readonly DependencyProbe[]): Promise<string[]> {
  const results = await Promise.allSettled(probes.map((p) => p.check()));
  return results.flatMap((r, i) => (r.status === 'rejected' ? [`${probes[i].name}: ${(r.reason as Error)?.message ?? String(r.reason)}`] : []));
}
