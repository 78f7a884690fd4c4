import { create } from '@bufbuild/protobuf';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HealthStatus, HeartbeatRequestSchema } from '../../gen/hive/v1/registry_pb.js';
import { validateHeartbeat } from '../../hive/validate.js';
import { ManualClock } from '../../lib/clock.js';
import { createDiskCollector } from '../../worker-agent/collectors/disk.js';
import { createGpuCollector } from '../../worker-agent/collectors/gpu.js';
import { createHealthEvaluator } from '../../worker-agent/health.js';
import type { HttpProbe } from '../../worker-agent/probe.js';
import { createSampler } from '../../worker-agent/sampler.js';
import { boundText, truncateUtf8 } from '../../worker-agent/wire-text.js';

// What the agent samples must be a heartbeat the hive accepts, whatever
// the failing sources said: the hive's own validateHeartbeat is the judge.

const dir = mkdtempSync(join(tmpdir(), 'hive-sampler-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sampler output against the hive\'s limits', () => {
  it('three failing long disk paths, a stderr line with tabs and newlines, a wordy probe: still a valid heartbeat', async () => {
    const smi = join(dir, 'nvidia-smi');
    writeFileSync(smi, "#!/bin/sh\nprintf 'NVML:\\tUnable to determine\\tthe device handle\\r\\nfor GPU 0000:01:00.0\\n' >&2\nexit 9\n", { mode: 0o755 });
    const longPaths = ['a', 'b', 'c'].map((c) => join(dir, 'gone', c.repeat(200)));
    const probe: HttpProbe = {
      url: 'http://127.0.0.1:1/health',
      probe: async () => ({ status: HealthStatus.UNHEALTHY, latencyMs: 3, detail: `GET failed:\n${'ü\t'.repeat(200)}` }),
    };
    const sample = createSampler({
      clock: new ManualClock(),
      collectors: [createGpuCollector({ command: smi }), createDiskCollector({ paths: ['/', ...longPaths] })],
      health: createHealthEvaluator(),
      probe,
    });
    const s = await sample();
    const hb = create(HeartbeatRequestSchema, { ...s, workerId: 'w-1', sessionId: 'abcd', seq: 1n });
    expect(() => validateHeartbeat(hb)).not.toThrow();

    const [gpu, disk] = hb.collectors;
    // Still says what went wrong, on one line.
    expect(gpu).toMatchObject({ name: 'gpu', success: false });
    expect(gpu!.error).toMatch(/exited with code 9: NVML: Unable to determine the device handle/);
    expect(disk).toMatchObject({ name: 'disk', success: false });
    expect(disk!.error).toMatch(/^statfs failed for .*gone/);
    expect(disk!.error.endsWith('...')).toBe(true);
    expect(Buffer.byteLength(disk!.error)).toBeLessThanOrEqual(256);
    expect(hb.disks.map((d) => d.path)).toEqual(['/']); // the readable path is kept
    expect(hb.status).toBe(HealthStatus.UNHEALTHY);
    expect(hb.statusDetail).toMatch(/^probe: GET failed: ü ü/);
    expect(Buffer.byteLength(hb.statusDetail)).toBeLessThanOrEqual(256);
  });
});

describe('boundText', () => {
  it('turns control characters into spaces and cuts by UTF-8 bytes, never inside a character', () => {
    expect(boundText('a\tb\nc\u0000d\u007fe\u0085f')).toBe('a b c d e f');
    const cut = boundText('é'.repeat(200)); // 400 bytes
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(256);
    expect(cut).toBe('é'.repeat(126) + '...');
    expect(truncateUtf8('short', 256)).toBe('short');
    expect(Buffer.byteLength(boundText('🙂'.repeat(100), 10))).toBeLessThanOrEqual(10);
  });
});
