import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { randomBytes } from 'node:crypto';
import type { ControlService } from '../gen/hive/v1/control_pb.js';
import { HealthCheckTrigger } from '../gen/hive/v1/health_check_pb.js';
import { TokenScope } from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import { checkCron, CronError } from '../lib/cron.js';
import { durationToMs } from '../lib/duration.js';
import { principalOf } from './auth.js';
import { alreadyExists, failedPrecondition, invalidArgument, notFound, permissionDenied } from './errors.js';
import { toHealthCheckMessage, toScheduleMessage } from './health-check-messages.js';
import type { HealthChecks } from './health-checks.js';
import { decodePageToken, encodePageToken, pageSize } from './paging.js';
import { parseSelector } from './selector.js';
import type { ScheduleRow, Store } from './store/store.js';
import { checkString } from './validate.js';

// ControlService's health-check RPCs: runs (start, get, list, watch) and
// their schedules (create, update, delete, list). Every check of the input
// happens before anything is stored or sent.

export interface HealthCheckHandlerDeps {
  healthChecks: HealthChecks;
  store: Store;
  clock: Clock;
}

export const CHECK_TIMEOUT = { defaultMs: 30_000, minMs: 100, maxMs: 10 * 60_000 } as const;

const SCHEDULE_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

type Handlers = Pick<
  ServiceImpl<typeof ControlService>,
  | 'startHealthCheck'
  | 'getHealthCheck'
  | 'listHealthChecks'
  | 'watchHealthCheck'
  | 'createHealthCheckSchedule'
  | 'updateHealthCheckSchedule'
  | 'deleteHealthCheckSchedule'
  | 'listHealthCheckSchedules'
>;

export function checkTimeoutMs(d: Parameters<typeof durationToMs>[0]): number {
  if (d && (d.seconds < 0n || d.nanos < 0)) throw invalidArgument('timeout must be positive');
  const ms = durationToMs(d);
  if (ms === undefined || ms === 0) return CHECK_TIMEOUT.defaultMs;
  if (!Number.isFinite(ms) || ms < CHECK_TIMEOUT.minMs || ms > CHECK_TIMEOUT.maxMs) throw invalidArgument(`timeout must be between ${CHECK_TIMEOUT.minMs} ms and 10 minutes`);
  return ms;
}

function checkCronText(cron: string): void {
  checkString('cron', cron);
  try {
    checkCron(cron);
  } catch (err) {
    if (err instanceof CronError) throw invalidArgument(err.message);
    throw err;
  }
}

export function createHealthCheckHandlers(deps: HealthCheckHandlerDeps): Handlers {
  const { healthChecks, store, clock } = deps;

  /** A schedule from a request, validated; undefined fields keep `base`'s values. */
  function scheduleFrom(input: { scheduleId: string; cron: string; enabled: boolean; labelSelector: string; timeout?: Parameters<typeof durationToMs>[0]; description: string }, base: { scheduleId: string; createdAt: number }): ScheduleRow {
    checkCronText(input.cron);
    parseSelector(input.labelSelector);
    checkString('description', input.description);
    const now = clock.now();
    return {
      scheduleId: base.scheduleId,
      cron: input.cron.trim(),
      enabled: input.enabled,
      labelSelector: input.labelSelector,
      timeoutMs: checkTimeoutMs(input.timeout),
      description: input.description,
      createdAt: base.createdAt,
      updatedAt: now,
    };
  }

  return {
    async startHealthCheck(req, ctx: HandlerContext) {
      const p = principalOf(ctx);
      if (req.scheduleId) {
        const s = await store.getSchedule(req.scheduleId);
        if (!s) throw notFound(`schedule "${req.scheduleId}" does not exist`);
        if (!s.enabled) throw failedPrecondition(`schedule "${req.scheduleId}" is disabled`);
        const check = await healthChecks.start({ labelSelector: s.labelSelector, timeoutMs: s.timeoutMs, trigger: HealthCheckTrigger.SCHEDULED, scheduleId: s.scheduleId, startedBy: p.scope === TokenScope.ADMIN ? 'admin' : 'monitor' });
        return { check };
      }
      if (p.scope !== TokenScope.ADMIN) throw permissionDenied('only an admin starts a health check by hand; the monitor starts scheduled ones');
      const timeoutMs = checkTimeoutMs(req.timeout);
      parseSelector(req.labelSelector);
      const check = await healthChecks.start({ labelSelector: req.labelSelector, timeoutMs, trigger: HealthCheckTrigger.MANUAL, scheduleId: '', startedBy: 'admin' });
      return { check };
    },

    async getHealthCheck(req) {
      if (!req.checkId) throw invalidArgument('check_id is required');
      return { check: await healthChecks.get(req.checkId) };
    },

    async listHealthChecks(req) {
      const size = pageSize(req.pageSize);
      if (!(req.trigger in HealthCheckTrigger)) throw invalidArgument(`trigger ${req.trigger} is not a HealthCheckTrigger`);
      const cursor = decodePageToken('hc', req.pageToken);
      let before: { startedAt: number; checkId: string } | undefined;
      if (cursor !== null) {
        const i = cursor.indexOf('|');
        const startedAt = Number(cursor.slice(0, i));
        if (i < 0 || !Number.isFinite(startedAt)) throw invalidArgument('page_token is not valid for this call');
        before = { startedAt, checkId: cursor.slice(i + 1) };
      }
      const rows = await store.listHealthChecks({ trigger: req.trigger === HealthCheckTrigger.UNSPECIFIED ? undefined : req.trigger, before, limit: size + 1 });
      const page = rows.slice(0, size);
      const last = page[page.length - 1];
      return {
        checks: page.map((r) => toHealthCheckMessage(r)),
        nextPageToken: rows.length > size ? encodePageToken('hc', `${last.startedAt}|${last.checkId}`) : '',
      };
    },

    async *watchHealthCheck(req, ctx) {
      if (!req.checkId) throw invalidArgument('check_id is required');
      for await (const check of healthChecks.watch(req.checkId, ctx.signal)) yield { check };
    },

    async createHealthCheckSchedule(req) {
      const s = req.schedule;
      if (!s) throw invalidArgument('schedule is required');
      if (s.scheduleId && !SCHEDULE_ID.test(s.scheduleId)) throw invalidArgument(`schedule_id must match ${SCHEDULE_ID.source}`);
      const row = scheduleFrom(s, { scheduleId: s.scheduleId || `sch_${randomBytes(5).toString('hex')}`, createdAt: clock.now() });
      if (await store.getSchedule(row.scheduleId)) throw alreadyExists(`schedule "${row.scheduleId}" exists; update it instead`);
      await store.putSchedule(row);
      return { schedule: toScheduleMessage(row) };
    },

    async updateHealthCheckSchedule(req) {
      const s = req.schedule;
      if (!s || !s.scheduleId) throw invalidArgument('schedule.schedule_id is required');
      const existing = await store.getSchedule(s.scheduleId);
      if (!existing) throw notFound(`schedule "${s.scheduleId}" does not exist`);
      const row = scheduleFrom(s, existing);
      await store.putSchedule(row);
      return { schedule: toScheduleMessage(row) };
    },

    async deleteHealthCheckSchedule(req) {
      if (!(await store.deleteSchedule(req.scheduleId))) throw notFound(`schedule "${req.scheduleId}" does not exist`);
      return {};
    },

    async listHealthCheckSchedules() {
      return { schedules: (await store.listSchedules()).map(toScheduleMessage) };
    },
  };
}
