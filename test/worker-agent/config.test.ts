import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/config.js';
import { loadAgentConfig } from '../../worker-agent/config.js';

// The agent's configuration: flags and environment, defaults, the hive's
// own limits checked at start, and every problem reported at once.

function problemsOf(argv: string[], env: NodeJS.ProcessEnv = {}): string[] {
  try {
    loadAgentConfig(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  return expect.unreachable('the configuration was accepted') as never;
}

describe('worker-agent config', () => {
  it('has the documented defaults', () => {
    const c = loadAgentConfig(['--worker-id', 'gpu-1'], {});
    expect(c).toMatchObject({ hive: '127.0.0.1:50051', workerId: 'gpu-1', interval: 5000, labels: {}, disks: ['/'], tokenFile: './worker-gpu-1.token', command: [] });
  });

  it('reads the environment; flags win; an empty variable counts as unset', () => {
    const env = { HIVE_ADDR: '10.0.0.1:50051', HIVE_JOIN_TOKEN: 'jt', WORKER_ID: 'gpu-2', HEARTBEAT_INTERVAL: '1s', WORKER_LABELS: 'pool=a, zone=b', WORKER_DISKS: '/,/data', WORKER_PROBE_URL: '' };
    const c = loadAgentConfig([], env);
    expect(c).toMatchObject({ hive: '10.0.0.1:50051', joinToken: 'jt', workerId: 'gpu-2', interval: 1000, labels: { pool: 'a', zone: 'b' }, disks: ['/', '/data'], probe: undefined });
    expect(loadAgentConfig(['--worker-id', 'gpu-3', '--label', 'x=y', '--', 'sleep', '1'], env)).toMatchObject({ workerId: 'gpu-3', labels: { x: 'y' }, command: ['sleep', '1'] });
    expect(problemsOf([], { WORKER_ID: '' })).toEqual(['--worker-id / WORKER_ID is required']);
    expect(loadAgentConfig([], { WORKER_ID: 'gpu-4', HEARTBEAT_INTERVAL: '', WORKER_DISKS: '' })).toMatchObject({ interval: 5000, disks: ['/'] });
  });

  it('refuses at start what the hive would refuse, every problem listed together', () => {
    const disks = Array.from({ length: 33 }, (_, i) => ['--disk', `/mnt/d${i}`]).flat();
    const problems = problemsOf([
      '--worker-id', 'bad id!',
      '--label', '-k=v',
      '--label', `long=${'v'.repeat(257)}`,
      '--label', 'tab=a\tb',
      '--interval', '10ms',
      '--disk', `/${'p'.repeat(300)}`,
      ...disks,
    ]);
    const text = problems.join('\n');
    expect(text).toMatch(/--worker-id \/ WORKER_ID: worker_id must match/);
    expect(text).toMatch(/--label \/ WORKER_LABELS: label key "-k" must match/);
    expect(text).toMatch(/--label \/ WORKER_LABELS: label long is longer than 256 bytes/);
    expect(text).toMatch(/--label \/ WORKER_LABELS: label tab contains control characters/);
    expect(text).toMatch(/--interval \/ HEARTBEAT_INTERVAL: heartbeat_interval must be between 100 ms and 24 h/);
    expect(text).toMatch(/--disk \/ WORKER_DISKS: disk path is longer than 256 bytes/);
    expect(text).toMatch(/--disk \/ WORKER_DISKS: 34 paths; the hive accepts at most 32/);
    expect(problems).toHaveLength(7);
  });

  it('more than 64 labels is a problem (a repeated key counts once)', () => {
    const labels = Array.from({ length: 65 }, (_, i) => `k${i}=v`).join(',');
    expect(problemsOf([], { WORKER_ID: 'w', WORKER_LABELS: labels })).toEqual(['--label / WORKER_LABELS: 65 labels; the hive accepts at most 64']);
    const c = loadAgentConfig([], { WORKER_ID: 'w', WORKER_LABELS: `${Array.from({ length: 64 }, (_, i) => `k${i}=v`).join(',')},k0=again` });
    expect(Object.keys(c.labels)).toHaveLength(64);
    expect(c.labels.k0).toBe('again');
  });
});
