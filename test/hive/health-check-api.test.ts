import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlService } from '../../gen/hive/v1/control_pb.js';
import { HealthCheckState, HealthCheckTrigger } from '../../gen/hive/v1/health_check_pb.js';
import { RegistryService, TokenScope } from '../../gen/hive/v1/registry_pb.js';
import { parseAddr } from '../../lib/config.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { startHive, type HiveHandle } from '../../hive/server.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { tempDir } from '../support/procs.js';

// The health-check and schedule RPCs over the wire (Connect on the HTTP
// port) against a real hive on PostgreSQL: scopes, bad input with the right
// code and no state change, paging, and a watch of a finished run.

const ADMIN = 'admin-token-for-health-check-api';

describe('health-check API', () => {
  const schema = uniqueSchema('hive_hcapi');
  let hive: HiveHandle;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let control: ReturnType<typeof createClient<typeof ControlService>>;
  const tokens: Record<'read' | 'monitor', string> = { read: '', monitor: '' };
  const as = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });
  const admin = as(ADMIN);

  async function code(p: Promise<unknown>): Promise<string> {
    try {
      await p;
    } catch (err) {
      return Code[ConnectError.from(err).code];
    }
    return 'OK';
  }

  beforeAll(async () => {
    dir = await tempDir();
    hive = await startHive(
      {
        grpcAddr: parseAddr('127.0.0.1:0'), httpAddr: parseAddr('127.0.0.1:0'), dataDir: dir.path, databaseUrl: PG_URL, databaseSchema: schema,
        adminToken: ADMIN, joinTokens: [], writeBehind: 1000, eventRetention: 86_400_000, logLevel: 'silent',
      },
      { log: createLogger('test', 'silent') },
    );
    const transport = createConnectTransport({ baseUrl: `http://127.0.0.1:${hive.httpPort}`, httpVersion: '1.1' });
    control = createClient(ControlService, transport);
    const registry = createClient(RegistryService, transport);
    tokens.read = (await registry.createToken({ scope: TokenScope.READ }, admin)).token;
    tokens.monitor = (await registry.createToken({ scope: TokenScope.MONITOR }, admin)).token;
  });
  afterAll(async () => {
    await hive?.stop();
    await dropSchema(schema);
    await dir?.remove();
  });

  it('refuses bad runs with the right code and stores nothing', async () => {
    expect(await code(control.startHealthCheck({ timeout: { seconds: -1n, nanos: 0 } }, admin))).toBe('InvalidArgument');
    expect(await code(control.startHealthCheck({ timeout: msToDuration(11 * 60_000) }, admin))).toBe('InvalidArgument');
    expect(await code(control.startHealthCheck({ timeout: msToDuration(50) }, admin))).toBe('InvalidArgument');
    expect(await code(control.startHealthCheck({ labelSelector: 'a=b,=c' }, admin))).toBe('InvalidArgument');
    expect(await code(control.startHealthCheck({}, as(tokens.read)))).toBe('PermissionDenied');
    expect(await code(control.startHealthCheck({}, as(tokens.monitor)))).toBe('PermissionDenied');
    expect(await code(control.startHealthCheck({}, as('not-a-token-at-all-1234')))).toBe('Unauthenticated');
    expect(await code(control.startHealthCheck({ scheduleId: 'nope' }, as(tokens.monitor)))).toBe('NotFound');
    expect(await code(control.getHealthCheck({ checkId: 'chk_nope' }, admin))).toBe('NotFound');
    expect(await code(control.getHealthCheck({ checkId: '' }, admin))).toBe('InvalidArgument');
    expect(await code(control.listHealthChecks({ pageToken: 'garbage' }, admin))).toBe('InvalidArgument');
    expect(await code(control.listHealthChecks({ trigger: 7 as HealthCheckTrigger }, admin))).toBe('InvalidArgument');
    expect((await control.listHealthChecks({}, admin)).checks).toEqual([]);
  });

  it('refuses bad schedules with the right code and stores nothing; CRUD keeps created_at', async () => {
    expect(await code(control.createHealthCheckSchedule({ schedule: { cron: 'every tuesday', enabled: true } }, admin))).toBe('InvalidArgument');
    expect(await code(control.createHealthCheckSchedule({ schedule: { cron: '61 * * * *', enabled: true } }, admin))).toBe('InvalidArgument');
    expect(await code(control.createHealthCheckSchedule({ schedule: { cron: '* * *', enabled: true } }, admin))).toBe('InvalidArgument');
    expect(await code(control.createHealthCheckSchedule({ schedule: { scheduleId: 'Bad Id!', cron: '* * * * *' } }, admin))).toBe('InvalidArgument');
    expect(await code(control.createHealthCheckSchedule({ schedule: { cron: '* * * * *', labelSelector: '!!' } }, admin))).toBe('InvalidArgument');
    expect(await code(control.createHealthCheckSchedule({ schedule: { cron: '* * * * *' } }, as(tokens.read)))).toBe('PermissionDenied');
    expect(await code(control.createHealthCheckSchedule({}, admin))).toBe('InvalidArgument');
    expect((await control.listHealthCheckSchedules({}, admin)).schedules).toEqual([]);

    const made = (await control.createHealthCheckSchedule({ schedule: { scheduleId: 'nightly', cron: '0 3 * * *', enabled: false, description: 'n' } }, admin)).schedule!;
    expect(made).toMatchObject({ scheduleId: 'nightly', cron: '0 3 * * *', enabled: false, timeout: { seconds: 30n } });
    expect(await code(control.createHealthCheckSchedule({ schedule: { scheduleId: 'nightly', cron: '0 4 * * *' } }, admin))).toBe('AlreadyExists');
    expect(await code(control.updateHealthCheckSchedule({ schedule: { scheduleId: 'nope', cron: '0 4 * * *' } }, admin))).toBe('NotFound');
    expect(await code(control.updateHealthCheckSchedule({ schedule: { scheduleId: 'nightly', cron: 'bad' } }, admin))).toBe('InvalidArgument');
    // A disabled schedule is not run, not even by the monitor.
    expect(await code(control.startHealthCheck({ scheduleId: 'nightly' }, as(tokens.monitor)))).toBe('FailedPrecondition');
    const updated = (await control.updateHealthCheckSchedule({ schedule: { scheduleId: 'nightly', cron: '0 4 * * *', enabled: true, timeout: msToDuration(2000) } }, admin)).schedule!;
    expect(updated).toMatchObject({ cron: '0 4 * * *', enabled: true, timeout: { seconds: 2n }, createdAt: made.createdAt });
    const listed = (await control.listHealthCheckSchedules({}, as(tokens.read))).schedules;
    expect(listed.map((s) => [s.scheduleId, s.cron, s.enabled])).toEqual([['nightly', '0 4 * * *', true]]);

    const run = (await control.startHealthCheck({ scheduleId: 'nightly' }, as(tokens.monitor))).check!;
    expect(run).toMatchObject({ trigger: HealthCheckTrigger.SCHEDULED, scheduleId: 'nightly', startedBy: 'monitor', state: HealthCheckState.DONE, total: 0 });
    expect(await code(control.deleteHealthCheckSchedule({ scheduleId: 'nope' }, admin))).toBe('NotFound');
    await control.deleteHealthCheckSchedule({ scheduleId: 'nightly' }, admin);
    expect((await control.listHealthCheckSchedules({}, admin)).schedules).toEqual([]);
  });

  it('pages the history newest first, filters by trigger, and a watch of a finished run is that run', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await control.startHealthCheck({ labelSelector: 'pool=none' }, admin)).check!.checkId);
    const p1 = await control.listHealthChecks({ pageSize: 2, trigger: HealthCheckTrigger.MANUAL }, as(tokens.read));
    const p2 = await control.listHealthChecks({ pageSize: 2, trigger: HealthCheckTrigger.MANUAL, pageToken: p1.nextPageToken }, as(tokens.read));
    expect(p2.nextPageToken).toBe('');
    expect(new Set([...p1.checks, ...p2.checks].map((c) => c.checkId))).toEqual(new Set(ids));
    expect((await control.listHealthChecks({ trigger: HealthCheckTrigger.SCHEDULED }, admin)).checks).toHaveLength(1);
    const seen = [];
    for await (const m of control.watchHealthCheck({ checkId: ids[0] }, as(tokens.read))) seen.push(m.check!);
    expect(seen.map((c) => [c.checkId, c.state])).toEqual([[ids[0], HealthCheckState.DONE]]);
  });

  it('counts finished runs on /metrics by trigger and band', async () => {
    const text = await (await fetch(`http://127.0.0.1:${hive.httpPort}/metrics`)).text();
    // Three manual runs and one scheduled one above, none refused, all without workers: healthy.
    expect(text).toContain('hive_health_checks_total{trigger="manual",band="healthy"} 3');
    expect(text).toContain('hive_health_checks_total{trigger="scheduled",band="healthy"} 1');
    expect(text).toContain('hive_health_checks_total{trigger="manual",band="critical"} 0');
    expect(text).toMatch(/^hive_health_checks_running 0$/m);
  });
});
