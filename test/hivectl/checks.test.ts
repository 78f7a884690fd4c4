import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandType, HealthStatus, HeartbeatRequestSchema } from '../../gen/hive/v1/registry_pb.js';
import { runHivectl } from '../../hivectl/cli.js';
import { EXIT } from '../../hivectl/errors.js';
import { systemClock } from '../../lib/clock.js';
import { eventually } from '../support/procs.js';
import { ADMIN, auth, startTestHive, type TestHive } from './fixture.js';

// `hivectl check`, `checks`, `check show` and `schedule` against a real
// hive on PostgreSQL. The workers are played by the test: it heartbeats,
// takes the CHECK command off the reply and answers it in the next beat.

describe('hivectl health checks', () => {
  let t: TestHive;
  const tokens = new Map<string, string>();
  const seqs = new Map<string, bigint>();

  const run = async (args: string[]) => {
    let out = '';
    let err = '';
    const code = await runHivectl(args, { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) }, env: { HIVE_URL: t.url, HIVE_TOKEN: ADMIN } }, systemClock, new AbortController().signal);
    return { code, out, err };
  };

  /** One heartbeat of the worker, carrying answers; returns the CHECK commands in the reply. */
  const beat = async (id: string, reports: Array<{ commandId: string; probeStatus: HealthStatus; probeDetail: string }> = []) => {
    const seq = (seqs.get(id) ?? 100n) + 1n;
    seqs.set(id, seq);
    const res = await t.registry.heartbeat(
      create(HeartbeatRequestSchema, {
        workerId: id, sessionId: 'hivectl-checks', seq, status: HealthStatus.HEALTHY,
        checkReports: reports.map((r) => ({ ...r, probeLatencySeconds: 0.004, hiveRttSeconds: 0.001, uptimeSeconds: 3600, stats: { memoryUsedBytes: 1n, memoryTotalBytes: 4n } })),
      }),
      auth(tokens.get(id)!),
    );
    return res.commands.filter((c) => c.type === CommandType.CHECK);
  };

  beforeAll(async () => {
    t = await startTestHive('hivectl_chk');
    tokens.set('c-ok', await t.seed('c-ok', { labels: { pool: 'p' } }));
    tokens.set('c-bad', await t.seed('c-bad', { labels: { pool: 'p' } }));
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('check --wait follows the run to the end, prints the per-worker table and exits 7 when a worker failed', async () => {
    const waiting = run(['check', '-l', 'pool=p', '--check-timeout', '20s', '--wait']);
    const ok = await eventually(async () => (await beat('c-ok'))[0], 10_000, 'the CHECK command for c-ok');
    const bad = await eventually(async () => (await beat('c-bad'))[0], 10_000, 'the CHECK command for c-bad');
    await beat('c-ok', [{ commandId: ok.commandId, probeStatus: HealthStatus.HEALTHY, probeDetail: 'GET returned 200 in 4 ms' }]);
    await beat('c-bad', [{ commandId: bad.commandId, probeStatus: HealthStatus.UNHEALTHY, probeDetail: 'GET returned HTTP 503' }]);
    const r = await waiting;
    expect(r.code).toBe(EXIT.CHECK_FAILED);
    expect(r.err).toContain('1 of 2 worker(s) failed the health check');
    expect(r.out).toMatch(/^Check\s+chk_[0-9a-f]+ \(manual, by admin\)$/m);
    expect(r.out).toMatch(/^State\s+done, 1 failed of 2$/m);
    expect(r.out).toMatch(/^Score\s+0\.78 degraded$/m);
    expect(r.out).toMatch(/^Summary\s+2 workers checked: 1 healthy, 0 degraded, 1 failed\. Failed: c-bad \(probe: GET returned HTTP 503\)\./m);
    expect(r.out).toMatch(/^WORKER\s+OUTCOME\s+SCORE\s+PROBE\s+RTT\s+UPTIME\s+REASON$/m);
    expect(r.out).toMatch(/^c-bad\s+answered\s+0\.55 unhealthy\s+4 ms\s+1 ms\s+1h\s+probe: GET returned HTTP 503$/m);
    expect(r.out).toMatch(/^c-ok\s+answered\s+1\.00 healthy\s+4 ms\s+1 ms\s+1h\s+ok$/m);
  });

  it('check without --wait prints the id; checks lists the history; check show prints one run; JSON is the API shape', async () => {
    const started = await run(['check', '-l', 'pool=none']);
    expect(started.code).toBe(0);
    const id = started.out.trim();
    expect(id).toMatch(/^chk_[0-9a-f]+$/);
    const list = await run(['checks']);
    expect(list.code).toBe(0);
    const lines = list.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^CHECK\s+STARTED\s+TRIGGER\s+SELECTOR\s+STATE\s+WORKERS\s+FAILED\s+SCORE$/);
    expect(lines[1]).toMatch(new RegExp(`^${id}\\s+\\S+\\s+manual\\s+pool=none\\s+done\\s+0\\s+0\\s+1\\.00 healthy$`));
    expect(lines).toHaveLength(3);
    const show = await run(['check', 'show', id]);
    expect(show.out).toContain('Summary    no workers matched');
    const json = JSON.parse((await run(['check', 'show', id, '-o', 'json'])).out);
    expect(json.check).toMatchObject({ checkId: id, state: 'HEALTH_CHECK_STATE_DONE', trigger: 'HEALTH_CHECK_TRIGGER_MANUAL' });
    expect((await run(['checks', '--trigger', 'scheduled'])).err).toContain('no health checks yet');
    expect((await run(['check', 'show', 'chk_nope'])).code).toBe(EXIT.NOT_FOUND);
    expect((await run(['check', '-l', '=bad'])).code).toBe(EXIT.USAGE);
  });

  it('schedule add, list, update, remove; a bad cron is a usage error', async () => {
    expect((await run(['schedule', 'add', 'hourly', '--cron', 'not a cron'])).code).toBe(EXIT.USAGE);
    const added = await run(['schedule', 'add', 'hourly', '--cron', '0 * * * *', '-l', 'pool=p', '--check-timeout', '10s', '--description', 'hourly sweep']);
    expect(added.code).toBe(0);
    expect(added.out.trim()).toBe('hourly');
    expect((await run(['schedule', 'add', 'hourly', '--cron', '0 * * * *'])).code).toBe(EXIT.CONFLICT);
    await run(['schedule', 'update', 'hourly', '--cron', '30 * * * *', '--disabled']);
    const list = await run(['schedule', 'list']);
    expect(list.out).toMatch(/^hourly\s+30 \* \* \* \*\s+no\s+\(all\)\s+30s\s+-$/m);
    expect((await run(['schedule', 'rm', 'hourly'])).code).toBe(0);
    expect((await run(['schedule', 'rm', 'hourly'])).code).toBe(EXIT.NOT_FOUND);
  });
});
