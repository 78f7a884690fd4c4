import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../support/procs.js';

// A PostgreSQL cluster owned by the test, on a spare port, that the test
// may stop and start: the shared test database must never be taken down.

const run = promisify(execFile);
const BIN = process.env.HIVE_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface OwnedPostgres {
  url: string;
  port: number;
  start(): Promise<void>;
  /** Fast shutdown: connections are closed, the port stops answering. */
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;

async function pgCmd(args: string[]): Promise<void> {
  // PostgreSQL refuses to run as root; run its tools as the postgres user then.
  if (asRoot) await run('runuser', ['-u', 'postgres', '--', ...args], { timeout: 60_000 });
  else await run(args[0], args.slice(1), { timeout: 60_000 });
}

export async function createOwnedPostgres(): Promise<OwnedPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'hive-pg-'));
  const data = join(dir, 'data');
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: g } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(g.trim()));
  }
  const port = await freePort();
  await pgCmd([join(BIN, 'initdb'), '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const pgctl = (...a: string[]) => pgCmd([join(BIN, 'pg_ctl'), '-D', data, ...a]);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB`;
  const pg: OwnedPostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start: () => pgctl('-o', opts, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'),
    stop: () => pgctl('-m', 'fast', '-w', '-t', '60', 'stop'),
    async destroy() {
      await pgctl('-m', 'immediate', '-w', 'stop').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await pg.start();
  return pg;
}
