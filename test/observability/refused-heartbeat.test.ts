import { create } from '@bufbuild/protobuf';
import { ConnectError } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeartbeatRequestSchema, HealthStatus } from '../../gen/hive/v1/registry_pb.js';
import { ADMIN, auth, startTestHive, type TestHive } from '../hivectl/fixture.js';

// A heartbeat the auth guard refuses is counted by result, but it was never
// handled, so it adds nothing to the handling-time histogram (a 0 s
// observation there would drag the latency quantiles down under an attack).

/** One sample of the hive's /metrics, 0 when the series is absent. */
async function sample(url: string, series: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe('heartbeats refused by the auth guard', () => {
  let t: TestHive;
  let workerToken: string;

  beforeAll(async () => {
    t = await startTestHive('hive_refused_hb');
    workerToken = await t.seed('gpu-r');
  });
  afterAll(async () => {
    await t?.stop();
  });

  const beat = (token: string, seq: bigint) =>
    t.registry.heartbeat(create(HeartbeatRequestSchema, { workerId: 'gpu-r', sessionId: 'test-session', seq, status: HealthStatus.HEALTHY }), auth(token));

  it('count their result and leave the handling histogram alone', async () => {
    const UNAUTH = 'hive_heartbeats_received_total{result="unauthenticated"}';
    const DENIED = 'hive_heartbeats_received_total{result="denied"}';
    const OK = 'hive_heartbeats_received_total{result="ok"}';
    const COUNT = 'hive_heartbeat_handling_seconds_count';
    const before = { unauth: await sample(t.url, UNAUTH), denied: await sample(t.url, DENIED), ok: await sample(t.url, OK), count: await sample(t.url, COUNT) };
    // The seeded worker's first heartbeat was handled and observed.
    expect(before.count).toBe(before.ok);
    expect(before.ok).toBeGreaterThanOrEqual(1);

    await expect(beat('not-a-token-at-all-000000', 100n)).rejects.toBeInstanceOf(ConnectError);
    await expect(beat('not-a-token-at-all-000000', 101n)).rejects.toBeInstanceOf(ConnectError);
    // The admin token is valid but has no heartbeat scope.
    await expect(beat(ADMIN, 102n)).rejects.toBeInstanceOf(ConnectError);

    expect(await sample(t.url, UNAUTH)).toBe(before.unauth + 2);
    expect(await sample(t.url, DENIED)).toBe(before.denied + 1);
    expect(await sample(t.url, COUNT)).toBe(before.count);

    // A heartbeat that is handled is observed, so the histogram is live.
    await beat(workerToken, 103n);
    expect(await sample(t.url, OK)).toBe(before.ok + 1);
    expect(await sample(t.url, COUNT)).toBe(before.count + 1);
  });
});
