import { create, fromBinary } from '@bufbuild/protobuf';
import { HealthCheckResultSchema, HealthCheckSchema, HealthCheckScheduleSchema, type HealthCheck } from '../gen/hive/v1/health_check_pb.js';
import { CheckReportSchema } from '../gen/hive/v1/registry_pb.js';
import { msToDuration, msToTimestamp } from '../lib/duration.js';
import type { HealthCheckResultRow, HealthCheckRow, ScheduleRow } from './store/store.js';

// Stored rows of runs, results and schedules as API messages.

export function toHealthCheckMessage(run: HealthCheckRow, results?: readonly HealthCheckResultRow[]): HealthCheck {
  return create(HealthCheckSchema, {
    checkId: run.checkId,
    trigger: run.trigger,
    scheduleId: run.scheduleId,
    labelSelector: run.labelSelector,
    timeout: msToDuration(run.timeoutMs),
    state: run.state,
    startedAt: msToTimestamp(run.startedAt),
    finishedAt: run.finishedAt === null ? undefined : msToTimestamp(run.finishedAt),
    total: run.total,
    completed: run.completed,
    failed: run.failed,
    score: run.score,
    band: run.band,
    summary: run.summary,
    startedBy: run.startedBy,
    results: (results ?? []).map((r) =>
      create(HealthCheckResultSchema, {
        workerId: r.workerId,
        outcome: r.outcome,
        score: r.score,
        band: r.band,
        reason: r.reason,
        report: r.report ? fromBinary(CheckReportSchema, r.report) : undefined,
        answeredAt: r.answeredAt === null ? undefined : msToTimestamp(r.answeredAt),
      }),
    ),
  });
}

export function toScheduleMessage(s: ScheduleRow) {
  return create(HealthCheckScheduleSchema, {
    scheduleId: s.scheduleId,
    cron: s.cron,
    enabled: s.enabled,
    labelSelector: s.labelSelector,
    timeout: msToDuration(s.timeoutMs),
    description: s.description,
    createdAt: msToTimestamp(s.createdAt),
    updatedAt: msToTimestamp(s.updatedAt),
  });
}
