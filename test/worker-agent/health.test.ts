import { describe, expect, it } from 'vitest';
import { HealthStatus } from '../../gen/hive/v1/registry_pb.js';
import { loadAgentConfig } from '../../worker-agent/config.js';
import { createHealthEvaluator, type HealthInput } from '../../worker-agent/health.js';

const { HEALTHY, DEGRADED, UNHEALTHY } = HealthStatus;

const ok: HealthInput = { probe: { status: HEALTHY, latencyMs: 12, detail: 'GET /health returned 200 in 12 ms' } };
const down: HealthInput = { probe: { status: UNHEALTHY, latencyMs: 3, detail: 'GET /health returned HTTP 500' } };
const slow: HealthInput = { probe: { status: HEALTHY, latencyMs: 1500, detail: 'GET /health returned 200 in 1500 ms' } };

function statuses(inputs: HealthInput[], options = {}) {
  const evaluator = createHealthEvaluator(options);
  return inputs.map((i) => evaluator.observe(i).status);
}

describe('health evaluator', () => {
  it('nothing wrong, and no probe configured, is healthy', () => {
    const e = createHealthEvaluator();
    expect(e.current()).toBeUndefined();
    expect(e.observe({})).toEqual({ status: HEALTHY, detail: 'ok' });
    expect(e.current()).toEqual({ status: HEALTHY, detail: 'ok' });
  });

  it("with the agent's default threshold (2 s), a probe slower than 2 s makes the worker DEGRADED after the usual streak", () => {
    const probeSlowMs = loadAgentConfig(['--worker-id', 'w'], {}).probeSlow;
    expect(probeSlowMs).toBe(2000);
    const at = (latencyMs: number): HealthInput => ({ probe: { status: HEALTHY, latencyMs, detail: `200 in ${latencyMs} ms` } });
    expect(statuses([at(2000), at(2000), at(2000)], { probeSlowMs })).toEqual([HEALTHY, HEALTHY, HEALTHY]);
    expect(statuses([at(100), at(2001), at(2001), at(2001)], { probeSlowMs })).toEqual([HEALTHY, HEALTHY, HEALTHY, DEGRADED]);
    const e = createHealthEvaluator({ probeSlowMs });
    expect(e.observe(at(2500)).detail).toBe('probe took 2500 ms (slow above 2000 ms)');
  });

  it('the first observation is taken as is', () => {
    expect(statuses([down])).toEqual([UNHEALTHY]);
    expect(statuses([slow])).toEqual([DEGRADED]);
  });

  it('turns unhealthy only after failuresBeforeCritical failures in a row', () => {
    const e = createHealthEvaluator();
    e.observe(ok);
    expect(e.observe(down)).toEqual({ status: HEALTHY, detail: 'probe: GET /health returned HTTP 500 (unhealthy after 3 in a row, 1 so far)' });
    expect(e.observe(down).status).toBe(HEALTHY);
    expect(e.observe(down)).toEqual({ status: UNHEALTHY, detail: 'probe: GET /health returned HTTP 500' });
  });

  it('a good observation resets the failure count', () => {
    expect(statuses([ok, down, down, ok, down, down, down])).toEqual([HEALTHY, HEALTHY, HEALTHY, HEALTHY, HEALTHY, HEALTHY, UNHEALTHY]);
  });

  it('turns healthy again only after successesBeforePassing successes in a row', () => {
    const e = createHealthEvaluator();
    e.observe(down);
    expect(e.observe(ok)).toEqual({ status: UNHEALTHY, detail: 'recovering: healthy after 2 in a row, 1 so far' });
    expect(e.observe(ok)).toEqual({ status: HEALTHY, detail: 'ok' });
  });

  it('thresholds are configurable', () => {
    expect(statuses([ok, down, ok], { failuresBeforeCritical: 1, successesBeforePassing: 1 })).toEqual([HEALTHY, UNHEALTHY, HEALTHY]);
    expect(() => createHealthEvaluator({ failuresBeforeCritical: 0 })).toThrow(RangeError);
  });

  it('an exited process is unhealthy at once, whatever came before', () => {
    const e = createHealthEvaluator();
    e.observe(ok);
    e.observe(ok);
    expect(e.observe({ ...ok, processExit: { exitCode: 137, signal: null } })).toEqual({
      status: UNHEALTHY,
      detail: 'process exited with code 137',
    });
    expect(e.observe({ processExit: { exitCode: null, signal: 'SIGKILL' } }).detail).toBe('process killed by SIGKILL');
    // Back after a restart: recovery still needs its successes.
    expect(e.observe(ok).status).toBe(UNHEALTHY);
    expect(e.observe(ok).status).toBe(HEALTHY);
  });

  it('resource pressure and slow probes degrade, naming every reason', () => {
    const e = createHealthEvaluator();
    const verdict = e.observe({
      probe: slow.probe,
      disks: [
        { path: '/', freeRatio: 0.5 },
        { path: '/data', freeRatio: 0.031 },
      ],
      memoryUsedRatio: 0.97,
    });
    expect(verdict).toEqual({
      status: DEGRADED,
      detail: 'probe took 1500 ms (slow above 1000 ms); disk /data free 3.1% < 5.0%; memory used 97.0% > 95.0%',
    });
  });

  it('a probe already judged degraded is named once', () => {
    const e = createHealthEvaluator();
    const verdict = e.observe({ probe: { status: DEGRADED, latencyMs: 1500, detail: 'GET /health took 1500 ms (slow above 1000 ms)' } });
    expect(verdict).toEqual({ status: DEGRADED, detail: 'probe: GET /health took 1500 ms (slow above 1000 ms)' });
  });

  it('limits are configurable and boundaries are not breaches', () => {
    const e = createHealthEvaluator({ diskFreeMinRatio: 0.2, memoryUsedMaxRatio: 0.5, probeSlowMs: 100 });
    expect(e.observe({ disks: [{ path: '/', freeRatio: 0.2 }], memoryUsedRatio: 0.5, probe: { status: HEALTHY, latencyMs: 100, detail: '' } }).status).toBe(HEALTHY);
  });

  it('degrading is damped like failing', () => {
    const pressure: HealthInput = { memoryUsedRatio: 0.99 };
    expect(statuses([ok, pressure, pressure, pressure])).toEqual([HEALTHY, HEALTHY, HEALTHY, DEGRADED]);
  });

  it('degraded then failing: degraded after three bad, unhealthy after three failing', () => {
    const pressure: HealthInput = { ...ok, memoryUsedRatio: 0.99 };
    expect(statuses([ok, pressure, down, down, down])).toEqual([HEALTHY, HEALTHY, HEALTHY, DEGRADED, UNHEALTHY]);
  });

  it('from unhealthy, degraded observations lead back to degraded first', () => {
    const pressure: HealthInput = { ...ok, memoryUsedRatio: 0.99 };
    const e = createHealthEvaluator();
    e.observe(down);
    expect(e.observe(pressure)).toEqual({ status: UNHEALTHY, detail: 'memory used 99.0% > 95.0% (recovering: degraded after 2 in a row, 1 so far)' });
    expect(e.observe(pressure).status).toBe(DEGRADED);
    expect(e.observe(ok).status).toBe(DEGRADED);
    expect(e.observe(ok).status).toBe(HEALTHY);
  });
});
