import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/config.js';
import { loadMonitorConfig } from '../../monitor/config.js';

// The monitor's configuration: flags and environment, defaults, and every
// problem reported at once.

const TOKEN = 'hive_mon_0123456789abcdef';

describe('monitor config', () => {
  it('has the documented defaults', () => {
    const c = loadMonitorConfig(['--token', TOKEN], {});
    expect(c).toMatchObject({
      hive: '127.0.0.1:50051',
      httpAddr: { host: '127.0.0.1', port: 9464 },
      massStaleShare: 0.5,
      massStaleMin: 3,
      massStaleWindow: null,
      alertStartupGrace: 90_000,
      alertCooldown: 300_000,
      execAllow: [],
      alertWebhooks: [],
    });
  });

  it('reads HIVE_ADDR, HIVE_TOKEN and MONITOR_HTTP_ADDR; flags win over the environment', () => {
    const env = { HIVE_ADDR: '10.0.0.1:50051', HIVE_TOKEN: TOKEN, MONITOR_HTTP_ADDR: '0.0.0.0:9999', MONITOR_EXEC_ALLOW: '/usr/bin/systemctl, /usr/bin/kubectl', MONITOR_MASS_STALE_SHARE: '40%' };
    const c = loadMonitorConfig([], env);
    expect(c).toMatchObject({ hive: '10.0.0.1:50051', token: TOKEN, httpAddr: { host: '0.0.0.0', port: 9999 }, execAllow: ['/usr/bin/systemctl', '/usr/bin/kubectl'], massStaleShare: 0.4 });
    expect(loadMonitorConfig(['--hive', 'hive:1'], env).hive).toBe('hive:1');
  });

  it('leader election: REDIS_URL, HIVE_REDIS_PREFIX and MONITOR_LEASE_TTL, checked', () => {
    expect(loadMonitorConfig(['--token', TOKEN], {})).toMatchObject({ redisUrl: undefined, redisPrefix: 'hive', leaseTtl: 10_000 });
    const c = loadMonitorConfig(['--token', TOKEN], { REDIS_URL: 'redis://r:6379', HIVE_REDIS_PREFIX: 'prod', MONITOR_LEASE_TTL: '3s' });
    expect(c).toMatchObject({ redisUrl: 'redis://r:6379', redisPrefix: 'prod', leaseTtl: 3000 });
    try {
      loadMonitorConfig(['--token', TOKEN, '--redis-url', 'http://r', '--redis-prefix', '{x}', '--lease-ttl', '10ms'], {});
      expect.unreachable();
    } catch (err) {
      const problems = (err as ConfigError).problems.join('\n');
      expect(problems).toMatch(/--redis-url \/ REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/);
      expect(problems).toMatch(/--redis-prefix \/ HIVE_REDIS_PREFIX: must be/);
      expect(problems).toMatch(/--lease-ttl \/ MONITOR_LEASE_TTL: must be between/);
    }
  });

  it('reports every problem at once', () => {
    try {
      loadMonitorConfig(['--mass-stale-share', '2', '--alert-webhook', 'ftp://x', '--refresh', '0s', '--selector', '=bad'], {});
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems.join('\n');
      expect(problems).toMatch(/--token \/ HIVE_TOKEN is required/);
      expect(problems).toMatch(/--mass-stale-share/);
      expect(problems).toMatch(/--alert-webhook/);
      expect(problems).toMatch(/--refresh/);
      expect(problems).toMatch(/--selector/);
      expect((err as ConfigError).problems).toHaveLength(5);
    }
  });
});
