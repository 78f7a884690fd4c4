import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/config.js';
import { resolveAdminToken } from '../../hive/admin-token.js';
import { loadHiveConfig } from '../../hive/config.js';

// The hive's configuration: flags and environment variables, an empty
// variable counting as unset, every problem reported at once.

const JOIN_A = 'join-aaaaaaaaaaaaaaaa';
const JOIN_B = 'join-bbbbbbbbbbbbbbbb';

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('hive configuration', () => {
  it('has the documented defaults; empty variables count as unset', () => {
    const c = loadHiveConfig([], { HIVE_GRPC_ADDR: '', HIVE_HTTP_ADDR: '', DATABASE_URL: '', HIVE_ADMIN_TOKEN: '', HIVE_JOIN_TOKENS: '', LOG_LEVEL: '' });
    expect(c.grpcAddr).toMatchObject({ host: '127.0.0.1', port: 50051 });
    expect(c.httpAddr).toMatchObject({ host: '127.0.0.1', port: 8080 });
    expect(c.dataDir).toBe('./data');
    expect(c.databaseUrl).toBeUndefined();
    expect(c.adminToken).toBeUndefined();
    expect(c.joinTokens).toEqual([]);
    expect(c.logLevel).toBe('info');
  });

  it('reads every setting from its environment variable, join tokens comma separated', () => {
    const c = loadHiveConfig([], {
      HIVE_GRPC_ADDR: '0.0.0.0:6000',
      HIVE_HTTP_ADDR: '127.0.0.1:6001',
      HIVE_DATA_DIR: '/var/lib/hive',
      DATABASE_URL: 'postgres://hive@db:5432/hive',
      HIVE_ADMIN_TOKEN: 'admin-0123456789abcdef',
      HIVE_JOIN_TOKENS: `${JOIN_A}, ${JOIN_B}`,
      LOG_LEVEL: 'debug',
    });
    expect(c.grpcAddr).toMatchObject({ host: '0.0.0.0', port: 6000 });
    expect(c.httpAddr).toMatchObject({ port: 6001 });
    expect(c.dataDir).toBe('/var/lib/hive');
    expect(c.databaseUrl).toBe('postgres://hive@db:5432/hive');
    expect(c.adminToken).toBe('admin-0123456789abcdef');
    expect(c.joinTokens).toEqual([JOIN_A, JOIN_B]);
    expect(c.logLevel).toBe('debug');
  });

  it('flags win over the environment', () => {
    const c = loadHiveConfig(['--grpc-addr', '127.0.0.1:7000', '--join-token', JOIN_B], { HIVE_GRPC_ADDR: '127.0.0.1:6000', HIVE_JOIN_TOKENS: JOIN_A });
    expect(c.grpcAddr).toMatchObject({ port: 7000 });
    expect(c.joinTokens).toEqual([JOIN_B]);
  });

  it('lists every problem at once', () => {
    const problems = problemsOf(() =>
      loadHiveConfig([], { HIVE_GRPC_ADDR: 'nowhere', DATABASE_URL: 'mysql://x', HIVE_ADMIN_TOKEN: 'short', HIVE_JOIN_TOKENS: 'tiny', LOG_LEVEL: 'loud' }),
    );
    expect(problems).toHaveLength(5);
    expect(problems.join('\n')).toMatch(/HIVE_GRPC_ADDR[\s\S]*DATABASE_URL[\s\S]*HIVE_ADMIN_TOKEN[\s\S]*HIVE_JOIN_TOKENS[\s\S]*LOG_LEVEL/);
  });
});

describe('admin token', () => {
  it('is generated once into the data directory with mode 0600, then reused; a configured one wins', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hive-admin-'));
    try {
      const first = await resolveAdminToken(undefined, join(dir, 'data'));
      expect(first.created).toBe(true);
      expect(first.token).toMatch(/^hive_adm_[A-Za-z0-9_-]{43}$/);
      const path = join(dir, 'data', 'admin-token');
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      expect((await readFile(path, 'utf8')).trim()).toBe(first.token);
      const again = await resolveAdminToken(undefined, join(dir, 'data'));
      expect(again).toMatchObject({ created: false, token: first.token });
      expect(await resolveAdminToken('configured-admin-token', join(dir, 'data'))).toEqual({ token: 'configured-admin-token', created: false });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
