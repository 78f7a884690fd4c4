import { create, equals, fromBinary, toBinary } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CollectorStatusSchema, HeartbeatRequestSchema, RegisterWorkerRequestSchema, TokenScope, WorkerStatsSchema, type CompactStats, type HeartbeatRequest } from '../../gen/hive/v1/registry_pb.js';
import { ManualClock } from '../../lib/clock.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { createRegistry, type Registry } from '../../hive/registry.js';
import type { Store } from '../../hive/store/store.js';
import type { Principal } from '../../hive/tokens.js';
import { toWorkerMessage } from '../../hive/worker.js';
import { createHeartbeatEncoder } from '../../worker-agent/compact.js';
import { dropSchema, openTestStore, uniqueSchema } from '../support/pg.js';
import { agentHeartbeat, eightGpus } from '../worker-agent/support/heartbeats.js';

// The compact heartbeat on a real registry (PostgreSQL store, manual
// clock): what the hive keeps equals what the full form gives, a hive
// without the session's inventory asks for it and gets it, and a compact
// heartbeat that does not fit is refused without changing anything.

const log = createLogger('test', 'silent');
const admin: Principal = { scope: TokenScope.ADMIN, tokenId: 'admin' };

function throwsWith(fn: () => unknown, code: Code): void {
  try {
    fn();
  } catch (err) {
    expect((err as { code: Code }).code, (err as Error).message).toBe(code);
    return;
  }
  throw new Error(`expected ${Code[code]}`);
}

describe('compact heartbeats', () => {
  const schema = uniqueSchema('hive_compact');
  let store: Store;
  let registry: Registry;
  const tokenIds = new Map<string, string>();
  const as = (workerId: string): Principal => ({ scope: TokenScope.WORKER, tokenId: tokenIds.get(workerId)!, workerId });

  beforeAll(async () => {
    store = await openTestStore(schema);
  });
  afterAll(async () => {
    await store.close();
    await dropSchema(schema);
  });
  afterEach(async () => {
    await registry?.stop();
  });

  async function fresh(): Promise<Registry> {
    registry = await createRegistry({ store, clock: new ManualClock(), log });
    return registry;
  }
  async function enroll(r: Registry, workerId: string): Promise<void> {
    const res = await r.register(admin, create(RegisterWorkerRequestSchema, { workerId, heartbeatInterval: msToDuration(1000) }));
    tokenIds.set(workerId, r.tokens.lookup(res.token)!.tokenId);
  }
  const statsBytes = (r: Registry, id: string) => toBinary(WorkerStatsSchema, toWorkerMessage(r.get(id)).stats!);
  const asFull = (workerId: string, seq: number, opts: Parameters<typeof agentHeartbeat>[1] = {}): HeartbeatRequest =>
    create(HeartbeatRequestSchema, { ...agentHeartbeat(seq, opts), workerId });

  it('keeps the same Worker from compact heartbeats as from full ones', async () => {
    const r = await fresh();
    await enroll(r, 'w-full');
    await enroll(r, 'w-compact');
    const enc = createHeartbeatEncoder();
    const failing = agentHeartbeat(1).collectors!.map((c) => (c.name === 'disk' ? { ...c, success: false, error: 'statfs /data: ENOENT' } : c));
    const plan = [{}, {}, { collectors: failing }, { collectors: failing }, {}, { smi: eightGpus(10_000, 0, 30) }, {}];
    for (let i = 0; i < plan.length; i++) {
      const seq = i + 1;
      const sent = enc.encode({ ...agentHeartbeat(seq, plan[i]), workerId: 'w-compact' });
      if (seq > 1) expect(sent.compact, `beat ${seq}`).toBeDefined();
      const reply = await r.heartbeat(as('w-compact'), sent);
      expect(reply.inventoryRequired).toBe(false);
      await r.heartbeat(as('w-full'), asFull('w-full', seq, plan[i]));
      const compactWorker = toWorkerMessage(r.get('w-compact'));
      const fullWorker = toWorkerMessage(r.get('w-full'));
      expect(compactWorker.lastSeq).toBe(BigInt(seq));
      expect(equals(WorkerStatsSchema, compactWorker.stats!, fullWorker.stats!), `stats after beat ${seq}`).toBe(true);
      expect(compactWorker.status).toBe(fullWorker.status);
    }
  });

  it('asks for the inventory when it lacks it (after a restart) and takes it', async () => {
    let r = await fresh();
    await enroll(r, 'w-restart');
    const enc = createHeartbeatEncoder();
    for (let seq = 1; seq <= 3; seq++) await r.heartbeat(as('w-restart'), enc.encode({ ...agentHeartbeat(seq), workerId: 'w-restart' }));
    const before = statsBytes(r, 'w-restart');
    await r.stop();
    r = await fresh();

    // The stream comes back in the same session, compact: the beat counts,
    // the hive keeps the stored GPUs and asks for the inventory.
    const hb4 = enc.encode({ ...agentHeartbeat(4), workerId: 'w-restart' });
    expect(hb4.compact).toBeDefined();
    const asked = await r.heartbeat(as('w-restart'), hb4);
    expect(asked.inventoryRequired).toBe(true);
    expect(r.get('w-restart').lastSeq).toBe(4n);
    const kept = toWorkerMessage(r.get('w-restart')).stats!;
    expect(kept.gpus.map((g) => g.memoryUsedBytes)).toEqual(agentHeartbeat(3).gpus!.map((g) => g.memoryUsedBytes));
    expect(kept.memoryUsedBytes).toBe(agentHeartbeat(4).memoryUsedBytes);
    expect(statsBytes(r, 'w-restart')).not.toEqual(before);

    enc.required(asked.ackSeq);
    const hb5 = enc.encode({ ...agentHeartbeat(5), workerId: 'w-restart' });
    expect(hb5.compact).toBeUndefined();
    expect((await r.heartbeat(as('w-restart'), hb5)).inventoryRequired).toBe(false);
    const hb6 = enc.encode({ ...agentHeartbeat(6), workerId: 'w-restart' });
    expect(hb6.compact?.inventorySeq).toBe(5n);
    expect((await r.heartbeat(as('w-restart'), hb6)).inventoryRequired).toBe(false);
    await enroll(r, 'w-ref');
    await r.heartbeat(as('w-ref'), asFull('w-ref', 6));
    expect(equals(WorkerStatsSchema, toWorkerMessage(r.get('w-restart')).stats!, toWorkerMessage(r.get('w-ref')).stats!)).toBe(true);
  });

  it('refuses a compact heartbeat that does not fit, before changing anything', async () => {
    const r = await fresh();
    await enroll(r, 'w-bad');
    const enc = createHeartbeatEncoder();
    await r.heartbeat(as('w-bad'), enc.encode({ ...agentHeartbeat(1), workerId: 'w-bad' }));
    const good = enc.encode({ ...agentHeartbeat(2), workerId: 'w-bad' });
    const stats = statsBytes(r, 'w-bad');
    const variant = (change: (hb: HeartbeatRequest, c: CompactStats) => void): HeartbeatRequest => {
      const hb = fromBinary(HeartbeatRequestSchema, toBinary(HeartbeatRequestSchema, good));
      change(hb, hb.compact!);
      return hb;
    };
    const collector = (name: string, success: boolean) => create(CollectorStatusSchema, { name, success, error: success ? '' : 'failed' });
    const variants: [string, HeartbeatRequest][] = [
      ['fewer memory values', variant((_, c) => c.gpuMemoryUsedMib.pop())],
      ['fewer utilisation values', variant((_, c) => (c.gpuUtilizationPercent = [50]))],
      ['fewer temperatures', variant((_, c) => c.gpuTemperatureCelsius.splice(0, 2))],
      ['utilisation over 100%', variant((_, c) => c.gpuUtilizationPercent.fill(101))],
      ['memory above the total', variant((_, c) => c.gpuMemoryUsedMib.fill(81_560n))],
      ['gpus beside compact', variant((hb) => (hb.gpus = create(HeartbeatRequestSchema, agentHeartbeat(2)).gpus))],
      ['inventory not earlier', variant((_, c) => (c.inventorySeq = 2n))],
      ['no inventory named', variant((_, c) => (c.inventorySeq = 0n))],
      ['unknown collector', variant((hb) => (hb.collectors = [collector('nvme', false)]))],
      ['collector twice', variant((hb) => (hb.collectors = [collector('gpu', false), collector('gpu', true)]))],
    ];
    for (const [what, hb] of variants) {
      throwsWith(() => r.heartbeat(as('w-bad'), hb), Code.InvalidArgument);
      expect(r.get('w-bad').lastSeq, what).toBe(1n);
      expect(statsBytes(r, 'w-bad'), what).toEqual(stats);
    }
    expect((await r.heartbeat(as('w-bad'), good)).ackSeq).toBe(2n);
  });
});
