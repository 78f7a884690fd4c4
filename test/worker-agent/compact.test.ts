import { create, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { HeartbeatStreamRequestSchema } from '../../gen/hive/v1/registry_pb.js';
import { compactOf, createHeartbeatEncoder, inventoryOf } from '../../worker-agent/compact.js';
import { agentHeartbeat, eightGpus } from './support/heartbeats.js';

// The agent's choice of heartbeat form: the inventory (GPU identity,
// collector statuses) once, then only the values that change.

const wireBytes = (heartbeat: ReturnType<ReturnType<typeof createHeartbeatEncoder>['encode']>) => toBinary(HeartbeatStreamRequestSchema, create(HeartbeatStreamRequestSchema, { heartbeat })).length;

describe('heartbeat encoder', () => {
  it('sends the inventory first, then a compact heartbeat of at most 200 bytes for 8 GPUs', () => {
    const enc = createHeartbeatEncoder();
    const first = enc.encode(agentHeartbeat(1));
    expect(first.compact).toBeUndefined();
    expect(first.gpus).toHaveLength(8);
    expect(first.collectors).toHaveLength(4);
    const second = enc.encode(agentHeartbeat(2));
    expect(second.gpus).toHaveLength(0);
    expect(second.collectors).toHaveLength(0);
    expect(second.compact?.inventorySeq).toBe(1n);
    expect(second.compact?.gpuMemoryUsedMib).toEqual(Array.from({ length: 8 }, (_, i) => BigInt(30_002 + i * 1117)));
    expect(second.compact?.gpuUtilizationPercent).toEqual([80, 81, 82, 83, 84, 85, 86, 87]);
    expect(second.compact?.gpuTemperatureCelsius).toEqual([55, 56, 57, 58, 59, 60, 61, 62]);
    expect(wireBytes(first)).toBeGreaterThan(900);
    expect(wireBytes(second)).toBeLessThanOrEqual(200);
  });

  it('carries a failing collector on every beat and a recovered one once', () => {
    const enc = createHeartbeatEncoder();
    const ok = agentHeartbeat(1).collectors!;
    const failing = ok.map((c) => (c.name === 'gpu' ? { ...c, success: false, error: 'nvidia-smi timed out' } : c));
    enc.encode(agentHeartbeat(1));
    expect(enc.encode(agentHeartbeat(2, { collectors: failing })).collectors.map((c) => c.name)).toEqual(['gpu']);
    expect(enc.encode(agentHeartbeat(3, { collectors: failing })).collectors.map((c) => c.name)).toEqual(['gpu']);
    const recovered = enc.encode(agentHeartbeat(4));
    expect(recovered.compact).toBeDefined();
    expect(recovered.collectors.map((c) => [c.name, c.success])).toEqual([['gpu', true]]);
    expect(enc.encode(agentHeartbeat(5)).collectors).toHaveLength(0);
  });

  it('falls back to the full form when the inventory changes or a value does not fit', () => {
    const enc = createHeartbeatEncoder();
    enc.encode(agentHeartbeat(1));
    const sevenGpus = eightGpus().split('\n').slice(0, 7).join('\n');
    const changed = enc.encode(agentHeartbeat(2, { smi: sevenGpus }));
    expect(changed.compact).toBeUndefined();
    expect(changed.gpus).toHaveLength(7);
    expect(enc.encode(agentHeartbeat(3, { smi: sevenGpus })).compact?.inventorySeq).toBe(2n);

    const held = inventoryOf(agentHeartbeat(1));
    const hb = agentHeartbeat(2);
    expect(compactOf(hb, held)).not.toBeNull();
    expect(compactOf({ ...hb, gpus: hb.gpus!.map((g, i) => (i === 3 ? { ...g, memoryUsedBytes: 1000n } : g)) }, held)).toBeNull();
    expect(compactOf({ ...hb, gpus: hb.gpus!.map((g, i) => (i === 3 ? { ...g, utilization: undefined } : g)) }, held)).toBeNull();
    expect(compactOf({ ...hb, gpus: hb.gpus!.map((g) => ({ ...g, utilization: 0.333 })) }, held)).toBeNull();
    expect(compactOf({ ...hb, gpus: hb.gpus!.map((g) => ({ ...g, temperatureCelsius: 50.5 })) }, held)).toBeNull();
    expect(compactOf({ ...hb, gpus: hb.gpus!.map((g, i) => (i === 0 ? { ...g, uuid: 'GPU-other' } : g)) }, held)).toBeNull();
    expect(compactOf({ ...hb, collectors: hb.collectors!.slice(1) }, held)).toBeNull();
    // Every GPU without a value is fine: the list is empty.
    expect(compactOf({ ...hb, gpus: hb.gpus!.map((g) => ({ ...g, utilization: undefined })) }, held)?.compact.gpuUtilizationPercent).toEqual([]);
  });

  it('sends the full form again when the hive asks about a heartbeat after the inventory', () => {
    const enc = createHeartbeatEncoder();
    enc.encode(agentHeartbeat(1));
    enc.encode(agentHeartbeat(2));
    enc.required(2n);
    const full = enc.encode(agentHeartbeat(3));
    expect(full.compact).toBeUndefined();
    // A late reply about a compact heartbeat sent before the new inventory changes nothing.
    enc.required(2n);
    expect(enc.encode(agentHeartbeat(4)).compact?.inventorySeq).toBe(3n);
    enc.reset();
    expect(enc.encode(agentHeartbeat(1, { sessionId: 'b'.repeat(16) })).compact).toBeUndefined();
  });
});
