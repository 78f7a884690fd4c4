import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlService } from '../../gen/hive/v1/control_pb.js';
import { RegistryService, TokenScope } from '../../gen/hive/v1/registry_pb.js';
import { HealthCheckState, HealthCheckTrigger } from '../../gen/hive/v1/health_check_pb.js';
import { ManualClock } from '../../lib/clock.js';
import { parseAddr } from '../../lib/config.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { startHive, type HiveHandle } from '../../hive/server.js';
import { createCheckScheduler, planSchedules } from '../../monitor/check-scheduler.js';
import { createHiveApi } from '../../monitor/hive-client.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { eventually, tempDir } from '../support/procs.js';

// The schedule loop on a ManualClock against a real hive over real gRPC:
// a cron schedule fires when the injected clock reaches its time, not
// before; a standby (not the leader) and a disabled schedule fire nothing.

const ADMIN = 'admin-token-for-scheduler-tests';
const log = createLogger('test', 'silent');
// 2023-11-14T22:13:20Z; "*/5 * * * *" fires next at 22:15:00, 100 s later.
const T0 = 1_700_000_000_000;

describe('health-check schedules fired by the monitor', () => {
  const schema = uniqueSchema('hive_sched');
  let hive: HiveHandle;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const auth = { headers: { authorization: `Bearer ${ADMIN}` } };
  let control: ReturnType<typeof createClient<typeof ControlService>>;
  let monitorToken: string;

  beforeAll(async () => {
    dir = await tempDir();
    hive = await startHive(
      {
        grpcAddr: parseAddr('127.0.0.1:0'), httpAddr: parseAddr('127.0.0.1:0'), dataDir: dir.path, databaseUrl: PG_URL, databaseSchema: schema,
        adminToken: ADMIN, joinTokens: [], writeBehind: 1000, eventRetention: 86_400_000, logLevel: 'silent',
      },
      { log },
    );
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${hive.grpcPort}` });
    control = createClient(ControlService, transport);
    monitorToken = (await createClient(RegistryService, transport).createToken({ scope: TokenScope.MONITOR, description: 'scheduler test' }, auth)).token;
    await control.createHealthCheckSchedule({ schedule: { scheduleId: 'every-5m', cron: '*/5 * * * *', enabled: true, labelSelector: 'pool=none', timeout: msToDuration(1000) } }, auth);
    await control.createHealthCheckSchedule({ schedule: { scheduleId: 'off', cron: '* * * * *', enabled: false } }, auth);
  });
  afterAll(async () => {
    await hive?.stop();
    await dropSchema(schema);
    await dir?.remove();
  });

  const scheduledRuns = async () => (await control.listHealthChecks({ trigger: HealthCheckTrigger.SCHEDULED }, auth)).checks;

  it('plans only enabled schedules and keeps the time of an unchanged one', () => {
    const s = (scheduleId: string, cron: string, enabled = true) => ({ scheduleId, cron, enabled }) as Parameters<typeof planSchedules>[1][number];
    const first = planSchedules(new Map(), [s('a', '*/5 * * * *'), s('b', '0 * * * *', false)], T0);
    expect([...first.keys()]).toEqual(['a']);
    expect(first.get('a')?.at).toBe(Date.UTC(2023, 10, 14, 22, 15));
    const later = planSchedules(first, [s('a', '*/5 * * * *')], T0 + 400_000);
    expect(later.get('a')?.at).toBe(Date.UTC(2023, 10, 14, 22, 15));
    const changed = planSchedules(first, [s('a', '0 * * * *')], T0);
    expect(changed.get('a')?.at).toBe(Date.UTC(2023, 10, 14, 23, 0));
  });

  it('fires a schedule when the injected clock reaches its cron time, and only the leader does', async () => {
    const clock = new ManualClock(T0);
    const standbyClock = new ManualClock(T0);
    const api = createHiveApi(`127.0.0.1:${hive.grpcPort}`, monitorToken);
    const fired: string[] = [];
    const leader = createCheckScheduler({ hive: api, clock, log, isLeader: () => true, refreshMs: 3_600_000, onFired: (id) => fired.push(id) });
    const standby = createCheckScheduler({ hive: api, clock: standbyClock, log, isLeader: () => false, refreshMs: 3_600_000, onFired: (id) => fired.push(`standby:${id}`) });
    leader.start();
    standby.start();
    try {
      // Parked: the schedules are read and the loop sleeps until 22:15.
      await eventually(() => clock.pending === 1 && leader.planned().size === 1, 10_000, 'the leader parked');
      await eventually(() => standbyClock.pending === 1 && standby.planned().size === 1, 10_000, 'the standby parked');
      expect(leader.planned().get('every-5m')).toBe(Date.UTC(2023, 10, 14, 22, 15));

      await clock.advance(99_999);
      await standbyClock.advance(100_000);
      await eventually(() => standbyClock.pending === 1, 10_000, 'the standby parked again');
      expect(fired).toEqual([]);
      expect(await scheduledRuns()).toEqual([]);

      await clock.advance(1);
      await eventually(() => fired.length === 1 && clock.pending === 1, 10_000, 'the leader fired');
      expect(fired).toEqual(['every-5m']);
      const runs = await scheduledRuns();
      expect(runs).toHaveLength(1);
      expect(runs[0]).toMatchObject({ scheduleId: 'every-5m', labelSelector: 'pool=none', startedBy: 'monitor', state: HealthCheckState.DONE });
      // The next firing is the next cron time, not a catch-up.
      expect(leader.planned().get('every-5m')).toBe(Date.UTC(2023, 10, 14, 22, 20));
    } finally {
      await leader.stop();
      await standby.stop();
    }
  });
});
