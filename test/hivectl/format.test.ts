import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { resolveConnection } from '../../hivectl/client.js';
import { splitArgv } from '../../hivectl/commands/policy.js';
import { CliError, describeError, EXIT } from '../../hivectl/errors.js';
import { formatAge, formatBytes, formatUsedTotal, painter, parseState, renderTable, stateSeverity, wantsColour } from '../../hivectl/format.js';
import { toYaml } from '../../hivectl/yaml.js';

// The pure parts of hivectl: formatting, YAML, argv splitting, error mapping.

describe('formatting', () => {
  it('sizes in binary units, used/total in the unit of the total', () => {
    expect(formatBytes(512)).toBe('512B');
    expect(formatBytes(1536)).toBe('1.5K');
    expect(formatBytes(80n * 1024n ** 3n)).toBe('80G');
    expect(formatBytes(150n * 1024n ** 3n)).toBe('150G');
    expect(formatUsedTotal(12n * 1024n ** 3n + 512n * 1024n ** 2n, 80n * 1024n ** 3n)).toBe('12.5/80G');
    expect(formatUsedTotal(0n, 0n)).toBe('-');
  });

  it('ages', () => {
    expect(formatAge(-5)).toBe('0s');
    expect(formatAge(42_000)).toBe('42s');
    expect(formatAge(185_000)).toBe('3m05s');
    expect(formatAge(2 * 3_600_000 + 10 * 60_000)).toBe('2h10m');
    expect(formatAge(76 * 3_600_000)).toBe('3d4h');
  });

  it('states by name, in any case, with or without the enum prefix; severity orders them', () => {
    expect(parseState('stale')).toBe(WorkerState.STALE);
    expect(parseState('WORKER_STATE_FAILED')).toBe(WorkerState.FAILED);
    expect(() => parseState('unspecified')).toThrow(/unknown state/);
    expect(stateSeverity(WorkerState.FAILED)).toBeGreaterThan(stateSeverity(WorkerState.STALE));
    expect(stateSeverity(WorkerState.STALE)).toBeGreaterThan(stateSeverity(WorkerState.UNHEALTHY));
    expect(stateSeverity(WorkerState.LEFT)).toBeLessThan(stateSeverity(WorkerState.HEALTHY));
  });

  it('colour only on a terminal, never with NO_COLOR or TERM=dumb; FORCE_COLOR wins', () => {
    expect(wantsColour({ isTTY: true }, {})).toBe(true);
    expect(wantsColour({ isTTY: false }, {})).toBe(false);
    expect(wantsColour({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(wantsColour({ isTTY: true }, { TERM: 'dumb' })).toBe(false);
    expect(wantsColour({ isTTY: false }, { FORCE_COLOR: '1' })).toBe(true);
  });

  it('aligns table columns by visible width, colour codes included', () => {
    const paint = painter(true);
    const text = renderTable(['A', 'B'], [[paint('red', 'xx'), 'y'], ['x', 'yy']], painter(false));
    expect(text.split('\n')).toEqual(['A   B', '\x1b[31mxx\x1b[0m  y', 'x   yy', '']);
  });
});

describe('toYaml', () => {
  it('reads back as the same value, strings that look like other types included', () => {
    const value = {
      workers: [
        { workerId: 'gpu-1', state: 'WORKER_STATE_HEALTHY', labels: { pool: 'a100', 'k8s.io/zone': 'eu-1' }, lastSeq: '42', interval: '5s', connected: true },
        { workerId: 'yes', detail: 'no: such "thing"\nline two', empty: [], nested: [[1, 2], []], obj: {}, n: null, f: 0.25 },
      ],
      odd: ['true', 'null', '~', '', ' padded ', '- dash', '#hash', '0x1F', '1e3', 'a: b', 'on', '@x', '*alias', '&anchor', '!tag', '%pct', '|', '>'],
    };
    expect(parseYaml(toYaml(value))).toEqual(value);
    expect(toYaml({ a: 'plain' })).toBe('a: plain\n');
  });
});

describe('splitArgv', () => {
  it('splits words like a POSIX shell: quotes and backslashes, nothing else', () => {
    expect(splitArgv(`systemctl restart 'vllm@{worker_id}'`)).toEqual(['systemctl', 'restart', 'vllm@{worker_id}']);
    expect(splitArgv(`curl -d "{\\"id\\": \\"{worker_id}\\"}" http://x/$HOME`)).toEqual(['curl', '-d', '{"id": "{worker_id}"}', 'http://x/$HOME']);
    expect(splitArgv(`a\\ b '' c`)).toEqual(['a b', '', 'c']);
    expect(() => splitArgv(`echo 'oops`)).toThrow(CliError);
  });
});

describe('describeError', () => {
  const url = 'http://hive:8080';
  it.each([
    [Code.Unavailable, EXIT.UNREACHABLE],
    [Code.DeadlineExceeded, EXIT.UNREACHABLE],
    [Code.Unimplemented, EXIT.UNREACHABLE],
    [Code.Unauthenticated, EXIT.AUTH],
    [Code.PermissionDenied, EXIT.AUTH],
    [Code.NotFound, EXIT.NOT_FOUND],
    [Code.InvalidArgument, EXIT.USAGE],
    [Code.AlreadyExists, EXIT.CONFLICT],
    [Code.FailedPrecondition, EXIT.CONFLICT],
    [Code.Internal, EXIT.ERROR],
  ])('maps %s to exit %s', (code, exit) => {
    expect(describeError(new ConnectError('x', code), url).exitCode).toBe(exit);
  });

  it('a connection reset is unreachable, not a conflict', () => {
    const err = new ConnectError('reset', Code.Aborted, undefined, undefined, Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
    expect(describeError(err, url).exitCode).toBe(EXIT.UNREACHABLE);
  });
});

describe('resolveConnection', () => {
  it('flags beat the environment; a token file beats HIVE_TOKEN; the default URL is the local hive', () => {
    expect(resolveConnection({ timeoutMs: 1 }, {})).toMatchObject({ url: 'http://127.0.0.1:8080', token: undefined });
    expect(resolveConnection({ timeoutMs: 1, token: 'flag' }, { HIVE_TOKEN: 'env', HIVE_URL: 'http://h:1/' })).toMatchObject({ url: 'http://h:1', token: 'flag' });
    expect(() => resolveConnection({ timeoutMs: 1, tokenFile: '/nonexistent/token' }, { HIVE_TOKEN: 'env' })).toThrow(/cannot read the token file/);
    expect(() => resolveConnection({ timeoutMs: 1, hiveUrl: 'hive:8080' }, {})).toThrow(/must be http/);
  });
});
