import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { CheckOutcome, HealthBand } from '../../gen/hive/v1/health_check_pb.js';
import { CheckReportSchema, HealthStatus } from '../../gen/hive/v1/registry_pb.js';
import { bandOf, isFailed, noAnswer, runScore, scoreReport } from '../../hive/check-score.js';
import { summarize, type SummaryResult } from '../../hive/check-summary.js';

// The pure parts of a health-check run: one worker's score from its
// answer, the run's score, and the rule-based summary.

const GIB = 1024n ** 3n;
const report = (over: Record<string, unknown> = {}) => create(CheckReportSchema, { commandId: 'c', probeStatus: HealthStatus.HEALTHY, probeDetail: 'ok', uptimeSeconds: 1, ...over });

describe('scoreReport', () => {
  it('follows the probe: healthy 1, degraded 0.8, unhealthy 0.55; no probe configured is no evidence against', () => {
    expect(scoreReport(report())).toEqual({ outcome: CheckOutcome.ANSWERED, score: 1, band: HealthBand.HEALTHY, reason: 'ok' });
    expect(scoreReport(report({ probeStatus: HealthStatus.DEGRADED, probeDetail: 'slow' }))).toMatchObject({ score: 0.8, band: HealthBand.DEGRADED, reason: 'probe: slow' });
    expect(scoreReport(report({ probeStatus: HealthStatus.UNHEALTHY, probeDetail: 'HTTP 500' }))).toMatchObject({ score: 0.55, band: HealthBand.UNHEALTHY, reason: 'probe: HTTP 500' });
    expect(scoreReport(report({ probeStatus: HealthStatus.UNSPECIFIED, probeDetail: 'no probe configured' })).score).toBe(1);
  });

  it('resource pressure, a failed collector and a slow round trip only lower it, each named', () => {
    const full = scoreReport(report({ stats: { disks: [{ path: '/', freeBytes: 1n * GIB, totalBytes: 1000n * GIB }] } }));
    expect(full.score).toBeLessThan(0.9);
    expect(full.reason).toBe('resource pressure (VRAM, memory or disk)');
    const both = scoreReport(report({ probeStatus: HealthStatus.UNHEALTHY, probeDetail: 'down', stats: { collectors: [{ name: 'gpu', success: false, error: 'hung' }] }, hiveRttSeconds: 1.5 }));
    expect(both.score).toBe(0.55);
    expect(both.reason).toBe('probe: down; collector gpu failed: hung; round trip to the hive 1500 ms');
    expect(scoreReport(report({ hiveRttSeconds: 1 })).score).toBe(1);
    expect(scoreReport(report({ hiveRttSeconds: 1.001 })).score).toBe(0.8);
  });

  it('no answer is 0, critical, failed; bands at their boundaries; a run is the mean', () => {
    expect(noAnswer(5000)).toEqual({ outcome: CheckOutcome.NO_ANSWER, score: 0, band: HealthBand.CRITICAL, reason: 'no answer within 5s' });
    expect(noAnswer(1500).reason).toBe('no answer within 1500 ms');
    expect([0.9, 0.8999, 0.7, 0.6999, 0.4, 0.3999].map(bandOf)).toEqual([HealthBand.HEALTHY, HealthBand.DEGRADED, HealthBand.DEGRADED, HealthBand.UNHEALTHY, HealthBand.UNHEALTHY, HealthBand.CRITICAL]);
    expect(isFailed({ outcome: CheckOutcome.ANSWERED, score: 0.7 })).toBe(false);
    expect(isFailed({ outcome: CheckOutcome.ANSWERED, score: 0.69 })).toBe(true);
    expect(isFailed({ outcome: CheckOutcome.NO_ANSWER, score: 1 })).toBe(true);
    expect(runScore([1, 0.5, 0])).toBe(0.5);
    expect(runScore([])).toBe(1);
  });
});

describe('summarize', () => {
  const r = (workerId: string, score: number, reason = 'ok', outcome = CheckOutcome.ANSWERED): SummaryResult => ({ workerId, score, reason, outcome });

  it('counts by band, names failures and degraded workers with their reasons', () => {
    expect(summarize([r('a', 1), r('b', 0.8, 'probe: slow'), r('c', 0, 'no answer within 5s', CheckOutcome.NO_ANSWER)])).toBe(
      '3 workers checked: 1 healthy, 1 degraded, 1 failed. Failed: c (no answer within 5s). Degraded: b (probe: slow). No previous run to compare with.',
    );
    expect(summarize([])).toBe('no workers matched');
    expect(summarize([r('a', 1)])).toBe('1 worker checked: 1 healthy, 0 degraded, 0 failed. No previous run to compare with.');
  });

  it('says what changed since the previous run', () => {
    const previous = { checkId: 'chk_prev', results: [r('a', 1), r('b', 0, 'x', CheckOutcome.NO_ANSWER), r('c', 1)] };
    expect(summarize([r('a', 0.55, 'probe: down'), r('b', 1), r('c', 1), r('d', 1)], previous)).toBe(
      '4 workers checked: 3 healthy, 0 degraded, 1 failed. Failed: a (probe: down). Since chk_prev: newly failing: a; recovered: b; not in it: d.',
    );
    expect(summarize([r('a', 1)], { checkId: 'chk_prev', results: [r('a', 1)] })).toMatch(/Since chk_prev: no change\.$/);
  });

  it('names at most ten workers per list', () => {
    const many = Array.from({ length: 12 }, (_, i) => r(`w${String(i).padStart(2, '0')}`, 0, 'down'));
    const text = summarize(many, { checkId: 'p', results: many.map((x) => ({ ...x, score: 1 })) });
    expect(text).toContain('w09 (down); and 2 more.');
    expect(text).toContain('newly failing: w00, w01, w02, w03, w04, w05, w06, w07, w08, w09 and 2 more');
  });
});
