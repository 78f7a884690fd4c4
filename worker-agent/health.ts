// The worker's health as the agent reports it. Pure and stateful: each tick
// feeds one observation and gets a verdict back; no clock, no I/O.
//
// Flapping is damped Consul-style: a status gets worse only after
// `failuresBeforeCritical` consecutive observations at least that bad, and
// better only after `successesBeforePassing` consecutive observations at least
// that good. Two exceptions: the first observation is taken as is (there is no
// previous status to hold), and an exited supervised process is unhealthy at
// once, since there is nothing left to flap.

import { HealthStatus } from '../gen/hive/v1/registry_pb.js';

export interface HealthOptions {
  failuresBeforeCritical?: number;
  successesBeforePassing?: number;
  /** A path with less free space than this (0..1) is degraded. */
  diskFreeMinRatio?: number;
  /** Memory used above this (0..1) is degraded. */
  memoryUsedMaxRatio?: number;
  /** A probe answering slower than this is degraded. */
  probeSlowMs?: number;
}

export interface HealthInput {
  /** Absent when no probe is configured. */
  probe?: { status: HealthStatus; latencyMs: number; detail: string };
  /** Present when the supervised process has exited. */
  processExit?: { exitCode: number | null; signal: string | null };
  disks?: ReadonlyArray<{ path: string; freeRatio: number }>;
  memoryUsedRatio?: number;
}

export interface HealthVerdict {
  status: HealthStatus;
  /** Short text naming every reason the worker is not healthy, or "ok". */
  detail: string;
}

export interface HealthEvaluator {
  observe(input: HealthInput): HealthVerdict;
  current(): HealthVerdict | undefined;
}

interface Assessment {
  raw: HealthStatus;
  reasons: string[];
  immediate: boolean;
}

// The enum's numbers already run from best to worst: HEALTHY 1, DEGRADED 2, UNHEALTHY 3.
const label: Record<HealthStatus, string> = {
  [HealthStatus.UNSPECIFIED]: 'unspecified',
  [HealthStatus.HEALTHY]: 'healthy',
  [HealthStatus.DEGRADED]: 'degraded',
  [HealthStatus.UNHEALTHY]: 'unhealthy',
};

export function createHealthEvaluator(options: HealthOptions = {}): HealthEvaluator {
  const {
    failuresBeforeCritical = 3,
    successesBeforePassing = 2,
    diskFreeMinRatio = 0.05,
    memoryUsedMaxRatio = 0.95,
    probeSlowMs = 1000,
  } = options;
  if (failuresBeforeCritical < 1 || successesBeforePassing < 1) {
    throw new RangeError('failuresBeforeCritical and successesBeforePassing must be at least 1');
  }

  let verdict: HealthVerdict | undefined;
  // Consecutive observations at least as bad as / at least as good as a level.
  let degradedOrWorse = 0;
  let unhealthy = 0;
  let healthy = 0;
  let degradedOrBetter = 0;

  function assess(input: HealthInput): Assessment {
    const reasons: string[] = [];
    let raw = HealthStatus.HEALTHY;
    let immediate = false;
    const worsen = (to: HealthStatus) => {
      if (to > raw) raw = to;
    };

    if (input.processExit) {
      const { exitCode, signal } = input.processExit;
      reasons.push(signal ? `process killed by ${signal}` : `process exited with code ${exitCode}`);
      worsen(HealthStatus.UNHEALTHY);
      immediate = true;
    }
    const probe = input.probe;
    if (probe) {
      if (probe.status === HealthStatus.UNHEALTHY) {
        reasons.push(`probe: ${probe.detail}`);
        worsen(HealthStatus.UNHEALTHY);
      } else if (probe.status === HealthStatus.DEGRADED) {
        reasons.push(`probe: ${probe.detail}`);
        worsen(HealthStatus.DEGRADED);
      } else if (probe.latencyMs > probeSlowMs) {
        reasons.push(`probe took ${probe.latencyMs} ms (slow above ${probeSlowMs} ms)`);
        worsen(HealthStatus.DEGRADED);
      }
    }
    for (const disk of input.disks ?? []) {
      if (disk.freeRatio < diskFreeMinRatio) {
        reasons.push(`disk ${disk.path} free ${percent(disk.freeRatio)} < ${percent(diskFreeMinRatio)}`);
        worsen(HealthStatus.DEGRADED);
      }
    }
    if (input.memoryUsedRatio !== undefined && input.memoryUsedRatio > memoryUsedMaxRatio) {
      reasons.push(`memory used ${percent(input.memoryUsedRatio)} > ${percent(memoryUsedMaxRatio)}`);
      worsen(HealthStatus.DEGRADED);
    }
    return { raw, reasons, immediate };
  }

  return {
    observe(input) {
      const { raw, reasons, immediate } = assess(input);
      degradedOrWorse = raw >= HealthStatus.DEGRADED ? degradedOrWorse + 1 : 0;
      unhealthy = raw >= HealthStatus.UNHEALTHY ? unhealthy + 1 : 0;
      healthy = raw === HealthStatus.HEALTHY ? healthy + 1 : 0;
      degradedOrBetter = raw <= HealthStatus.DEGRADED ? degradedOrBetter + 1 : 0;

      const previous = verdict?.status;
      let status: HealthStatus;
      let pending = '';
      if (previous === undefined || immediate) {
        status = raw;
      } else if (raw > previous) {
        if (unhealthy >= failuresBeforeCritical) status = HealthStatus.UNHEALTHY;
        else if (degradedOrWorse >= failuresBeforeCritical && previous < HealthStatus.DEGRADED) status = HealthStatus.DEGRADED;
        else status = previous;
        if (status !== raw) {
          const streak = raw === HealthStatus.UNHEALTHY ? unhealthy : degradedOrWorse;
          pending = `${label[raw]} after ${failuresBeforeCritical} in a row, ${streak} so far`;
        }
      } else if (raw < previous) {
        if (healthy >= successesBeforePassing) status = HealthStatus.HEALTHY;
        else if (previous === HealthStatus.UNHEALTHY && degradedOrBetter >= successesBeforePassing) status = HealthStatus.DEGRADED;
        else status = previous;
        if (status !== raw) {
          const streak = raw === HealthStatus.HEALTHY ? healthy : degradedOrBetter;
          pending = `recovering: ${label[raw]} after ${successesBeforePassing} in a row, ${streak} so far`;
        }
      } else {
        status = raw;
      }

      const because = reasons.join('; ');
      const detail = pending ? (because ? `${because} (${pending})` : pending) : because || 'ok';
      verdict = { status, detail };
      return verdict;
    },
    current() {
      return verdict;
    },
  };
}

function percent(ratio: number): string {
  return `${(ratio * 100).toFixed(1)}%`;
}
